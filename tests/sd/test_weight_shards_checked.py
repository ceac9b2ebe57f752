"""A weight folder from a stranger is checked against its own index before anything trains on it (review BN1, BN2,
BN3, BN11): each shard's header (names, dtypes, shapes, its own list of identities) against the index's space,
layers and rows, the index's fields against sane values, each refusal one line naming index.json or the shard,
before any model loads. NaN or Inf in a shard is refused as the row is read."""

from __future__ import annotations

import json
import os

import pytest
import torch
import weight_folder_edits  # tests/sd, on the path as pytest puts it
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it
from safetensors.torch import save_file
from weight_folder_edits import SHARD, edit_index, read_shard, refused  # tests/sd, as above

from lowdim.errors import LowdimError
from lowdim_sd import loading
from lowdim_sd.file_info import describe
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.weight_dataset import WeightDataset
from lowdim_sd.weight_index import done_identities, read_index

pytestmark = pytest.mark.usefixtures("one_thread")
made, copy = weight_folder_edits.made, weight_folder_edits.copy  # its fixtures, used by name


def edit_shard(folder, change) -> str:
    """Rewrite the shard after ``change(tensors, metadata)``; the first A_train key, which ``change`` may use."""
    tensors, metadata = read_shard(folder / SHARD)
    key = sorted(k for k in tensors if k.endswith("/A_train"))[0]
    change(tensors, metadata, key)
    save_file(tensors, str(folder / SHARD), metadata=metadata)
    return key


def test_a_folder_as_precompute_wrote_it_passes(made):
    data = WeightDataset(made)
    assert len(data.names) == 3 and set(data.weights(2)) == {layer.name for layer in data.layers}


@pytest.mark.parametrize(("damage", "said"), [
    (lambda t, m, k: t.__setitem__(k, torch.zeros(3, 7, 1)),
     r"tensor '.*/A_train' has shape \(3, 7, 1\); the index's space and layers need \(3, \d+, 1\)"),
    (lambda t, m, k: t.__setitem__("evil/X", torch.zeros(3, 5)), r"unexpected tensor 'evil/X'"),
    (lambda t, m, k: t.pop(k), r"missing tensor '.*/A_train'"),
    (lambda t, m, k: t.__setitem__(k, t[k].to(torch.int32)), r"tensor '.*/A_train' holds I32 values, not floats"),
    (lambda t, m, k: t.__setitem__(k, t[k].half()), r"tensor '.*/A_train' is F16, the others F32"),
    (lambda t, m, k: [t.__setitem__(name, value[:2].clone()) for name, value in list(t.items())],
     r"shard-00000.safetensors: its metadata's list of identities is not one name per row"),
    (lambda t, m, k: [t.__setitem__(name, value[:2].clone()) for name, value in list(t.items())]
     and m.__setitem__("identities", json.dumps(["person_000", "person_001"])),
     r"index.json names row 2 of .*shard-00000.safetensors \(identity 'person_002'\), which holds 2 rows"),
    (lambda t, m, k: m.__setitem__("identities", json.dumps(["x", "y", "z"])),
     r"shard-00000.safetensors: row 0 is 'x' in the shard's own list, but index.json names it 'person_000'"),
])
def test_a_shard_that_does_not_fit_its_index_is_one_line_naming_it(copy, damage, said):
    edit_shard(copy, damage)
    line = refused(copy, said)
    assert str(copy) in line


@pytest.mark.parametrize(("change", "said"), [
    (lambda i: i["identities"][2].__setitem__("row", -1), r"index.json: identity 'person_002' has row -1; a row is"),
    (lambda i: i["identities"][2].__setitem__("row", "1"), r"index.json: identity 'person_002' has row '1'"),
    (lambda i: i["identities"][2].__setitem__("row", True), r"index.json: identity 'person_002' has row True"),
    (lambda i: i["identities"][1].__setitem__("name", "person_000"), r"index.json: identity 'person_000' is listed "
                                                                     r"twice"),
    (lambda i: i["identities"].append({**i["identities"][0], "name": "ghost", "shard": "shard-00009.safetensors"}),
     r"index.json names shard-00009.safetensors \(identity 'ghost'\), which is missing"),
    (lambda i: i.__setitem__("layers", "abc"), r"index.json: the layer list .* is not a list"),
    (lambda i: i.__setitem__("resolution", 10**6), r"index.json: resolution 1000000 is not a side lowdim trains at"),
    (lambda i: i.__setitem__("resolution", "x"), r"index.json: resolution 'x' is not a side lowdim trains at"),
    (lambda i: i["space_config"].__setitem__("a", 7), r"has shape \(3, \d+, 1\); the index's space and layers need "
                                                      r"\(3, 7, 1\)"),
    (lambda i: i["identities"][0].__setitem__("images", ["person_000/../../etc/hostname"]),
     r"index.json: identity 'person_000' names image 'person_000/../../etc/hostname'; an index names its images by "
     r"their path inside its root, with no '\.\.', or by an absolute path"),
    (lambda i: i["identities"][0].__setitem__("images", ["../../../../etc/hostname"]),
     r"identity 'person_000' names image '../../../../etc/hostname'"),
    (lambda i: i["identities"][0].__setitem__("images", []), r"identity 'person_000' names no images"),
])
def test_an_index_that_cannot_be_trained_on_is_one_line_naming_it(copy, change, said):
    edit_index(copy, change)
    refused(copy, said)


def test_a_shard_that_is_a_link_is_refused_by_name(copy, tmp_path):
    outside = tmp_path / "outside.safetensors"
    (copy / SHARD).rename(outside)
    os.symlink(outside, copy / SHARD)
    refused(copy, r"shard-00000.safetensors: a symbolic link; a weight folder's shards are its own files")


def test_nan_or_inf_in_a_shard_is_refused_as_the_row_is_read(copy):
    key = edit_shard(copy, lambda t, m, k: t[k].__setitem__(1, float("nan")))
    data = WeightDataset(copy)  # headers only: the values are read with the row
    data.weights(0)
    with pytest.raises(LowdimError, match=rf"{SHARD}: tensor '{key}' holds NaN or Inf values in row 1 \(identity "
                                          rf"'person_001'\); refusing it"):
        data.weights(1)


def test_a_damaged_folder_stops_train_hypernet_before_any_model_loads_and_writes_nothing(copy, tmp_path, monkeypatch):
    edit_shard(copy, lambda t, m, k: t.__setitem__("evil/X", torch.zeros(3, 5)))
    monkeypatch.setattr(loading, "load_sd", lambda *a, **k: pytest.fail("the SD model loaded"))
    with pytest.raises(LowdimError, match="unexpected tensor 'evil/X'"):
        train_hypernet(job(copy, tmp_path / "h", alpha=0.0, checkpoint_every=1), progress=False)
    assert not (tmp_path / "h" / "checkpoints").exists() and not (tmp_path / "h" / "split.json").exists()


def test_a_precompute_rerun_does_not_count_a_damaged_shard_as_done(copy):
    header = {key: value for key, value in read_index(copy).items() if key != "identities"}
    assert set(done_identities(copy, header)) == {"person_000", "person_001", "person_002"}
    edit_shard(copy, lambda t, m, k: t.__setitem__(k, torch.zeros(3, 7, 1)))
    with pytest.raises(LowdimError, match=r"shard-00000.safetensors: tensor .* has shape \(3, 7, 1\)"):
        done_identities(copy, header)


def test_show_says_a_folder_that_cannot_train_is_damaged(copy):
    assert "damaged" not in dict(describe(copy).rows)
    edit_shard(copy, lambda t, m, k: t.pop(k))
    info = describe(copy)
    assert dict(info.rows)["damaged"].startswith(f"{copy / SHARD}: missing tensor")
    assert "train-hypernet" not in info.use and info.as_dict()["fields"]["damaged"]


def test_the_header_check_reads_no_tensor(made, monkeypatch):
    """Headers only: a real folder has thousands of identities, read once each per epoch, not at the start."""
    import safetensors

    real = safetensors.safe_open

    class HeaderOnly:
        def __init__(self, *args, **kwargs):
            self.file = real(*args, **kwargs)

        def __enter__(self):
            self.file.__enter__()
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

        def __getattr__(self, name):
            if name == "get_tensor":
                pytest.fail("a tensor was read")
            return getattr(self.file, name)

        def get_slice(self, key):
            part = self.file.get_slice(key)

            class Shape:
                def get_shape(self):
                    return part.get_shape()

                def get_dtype(self):
                    return part.get_dtype()

                def __getitem__(self, item):
                    pytest.fail("a tensor was read")

            return Shape()

    monkeypatch.setattr(safetensors, "safe_open", HeaderOnly)
    WeightDataset(made)


def test_precompute_records_a_linked_picture_by_where_it_was_found(tmp_path):
    """precompute names a picture it found under the root by its place there, not by an absolute path (which it
    wrote before 1ef893c): a picture that is a link out of the folder, or one in a linked sub-folder, included, so
    the folder moves with its pictures (--image-root, a moved root)."""
    from lowdim_sd.precompute_resume import relative

    root = tmp_path / "ids"
    (root / "p").mkdir(parents=True)
    (tmp_path / "elsewhere.png").write_bytes(b"x")
    (root / "p" / "a.png").symlink_to(tmp_path / "elsewhere.png")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "b.png").write_bytes(b"y")
    (root / "q").symlink_to(tmp_path / "linked")
    (root / "r").mkdir()
    (root / "r" / "c.png").write_bytes(b"z")
    pictures = (root / "p" / "a.png", root / "q" / "b.png", root / "r" / "c.png")
    assert [relative(path, root.resolve()) for path in pictures] == ["p/a.png", "q/b.png", "r/c.png"]


def test_a_row_unreadable_before_the_first_step_stops_without_a_checkpoint_of_the_start(copy, tmp_path,
                                                                                       monkeypatch):
    """Nothing trained yet: the line is the read's own, and no step-0 checkpoint is left to clean up."""
    def gone(self, item):
        raise LowdimError(f"{copy / SHARD}: removed since this run read the index")

    monkeypatch.setattr(WeightDataset, "__getitem__", gone)  # after the header checks, at the first batch's read
    with pytest.raises(LowdimError) as error:
        train_hypernet(job(copy, tmp_path / "h", alpha=0.0, checkpoint_every=1, val_identities=0),
                       progress=False)
    said = str(error.value)
    assert said == f"{copy / SHARD}: removed since this run read the index", said
    checkpoints = tmp_path / "h" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
