"""The weight folder's header check at its edges (review BS1-BS5): the index's resolution at and past its bounds,
an image path with a NUL byte, a shard with one tensor shorter than the others, two shards of different dtypes, and
the image paths a precompute rerun may count as found under a moved root. Each refusal is one line naming index.json,
the shard or the folder, before anything trains on it."""

from __future__ import annotations

import json

import pytest
import torch
import weight_folder_edits  # tests/sd, on the path as pytest puts it
from safetensors.torch import save_file
from weight_folder_edits import SHARD, edit_index, read_shard, refused  # tests/sd, as above

from lowdim_sd.weight_dataset import WeightDataset
from lowdim_sd.weight_shards import MAX_RESOLUTION, image_inside_root

pytestmark = pytest.mark.usefixtures("one_thread")
SECOND = "shard-00001.safetensors"
made, copy = weight_folder_edits.made, weight_folder_edits.copy  # its fixtures, used by name


@pytest.mark.parametrize("resolution", [12, True, False, 0, 4, 8200, MAX_RESOLUTION + 8, -512, 512.0])
def test_a_resolution_no_lowdim_trains_at_is_refused_in_one_line(copy, resolution):
    edit_index(copy, lambda index: index.__setitem__("resolution", resolution))
    refused(copy, rf"index.json: resolution {resolution!r} is not a side lowdim trains at \(a multiple of 8 from 8 "
                  rf"to {MAX_RESOLUTION}\); the index is damaged")


@pytest.mark.parametrize("resolution", [8, 16, MAX_RESOLUTION])
def test_every_resolution_the_refusal_offers_passes_the_header_check(copy, resolution):
    """The line says 'from 8 to 8192': both ends are sides an index may hold."""
    edit_index(copy, lambda index: index.__setitem__("resolution", resolution))
    assert len(WeightDataset(copy).names) == 3


def test_an_image_path_with_a_nul_byte_is_refused_before_anything_opens_it(copy):
    """Python's open() would raise a bare 'embedded null byte' where the picture is read."""
    edit_index(copy, lambda index: index["identities"][0].__setitem__("images", ["person_000/a\x00.png"]))
    refused(copy, r"index.json: identity 'person_000' names image 'person_000/a\\x00.png'; an index names its images")


def test_a_shard_with_one_tensor_shorter_than_the_others_is_refused_naming_it(copy):
    """Rows are counted from one tensor: a shard whose tensors disagree would fail only where a row is read."""
    tensors, metadata = read_shard(copy / SHARD)
    short = sorted(tensors)[-1]  # not the tensor the rows are counted from
    tensors[short] = tensors[short][:2].clone()
    save_file(tensors, str(copy / SHARD), metadata=metadata)
    line = refused(copy, rf"{SHARD}: tensor '{short}' has shape \(2, [^)]*\); the index's space and layers need "
                         rf"\(3, ")
    assert str(copy) in line


def split_into_two_shards(folder, second_dtype: torch.dtype) -> None:
    """Move the last identity (row 2) into a shard of its own, its tensors cast to ``second_dtype``."""
    tensors, metadata = read_shard(folder / SHARD)
    names = json.loads(metadata["identities"])
    save_file({key: value[:2].clone() for key, value in tensors.items()}, str(folder / SHARD),
              metadata={**metadata, "identities": json.dumps(names[:2])})
    save_file({key: value[2:].to(second_dtype) for key, value in tensors.items()}, str(folder / SECOND),
              metadata={**metadata, "identities": json.dumps(names[2:])})

    def move(index):
        entry = next(entry for entry in index["identities"] if entry["name"] == names[2])
        entry.update(shard=SECOND, row=0)

    edit_index(folder, move)


def test_a_folder_of_two_shards_of_one_dtype_passes(copy):
    split_into_two_shards(copy, torch.float32)
    data = WeightDataset(copy)
    assert len(data.names) == 3 and set(data.weights(2)) == {layer.name for layer in data.layers}


def test_two_shards_of_different_dtypes_in_one_folder_are_refused_naming_both(copy):
    """One recipe, one precision: an fp16 shard among fp32 ones is another folder's, copied in."""
    split_into_two_shards(copy, torch.float16)
    line = refused(copy, rf"{SHARD} holds F32 values and {SECOND} F16; one weight folder's shards share one dtype")
    assert line.startswith(f"{copy}: "), line


@pytest.mark.parametrize("image", ["person_000/a.png", "a.png", "person_000\\a.png"])
def test_a_plain_relative_image_path_is_inside_the_root(image):
    assert image_inside_root(image)


@pytest.mark.parametrize("image", ["/x.png", "\\x.png", "C:x.png", "C:\\x.png", "//host/share/x.png",
                                   "person_000/../../x.png", "a\x00.png", ""])
def test_an_image_path_with_a_root_or_drive_of_its_own_is_not_inside_the_root(image):
    """On Windows, root / '\\x.png' is the drive's top folder and root / 'C:x.png' is drive C's current folder:
    neither is below the root, so a precompute rerun must not count such an identity as found under a moved root."""
    assert not image_inside_root(image)
