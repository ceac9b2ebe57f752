"""Messages of the SD backend that said "image(s)", "shard(s)", "CUDA device(s)": one is said in the singular
(review EZ, finding 6), from a line a user reads (eval.md, ``lowdim show``, a refused --device)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_sd.devices import resolve_device
from lowdim_sd.eval.job import nothing_scored
from lowdim_sd.eval.report import settings_line
from lowdim_sd.weight_folder_info import index_rows


def test_eval_says_one_image_with_its_own_references_in_the_singular():
    assert "(other ones for 1 image, listed per image in eval.json)" in settings_line({}, own_references=1)
    assert "(other ones for 2 images, listed" in settings_line({}, own_references=2)


def test_eval_of_one_image_nothing_scored_says_image_in_the_singular():
    report = SimpleNamespace(images=["a.png"], smallest_side=None,
                             results=[SimpleNamespace(name="face-rec", summary=SimpleNamespace(scored=0, not_asked=0))])
    assert nothing_scored(report, ("face-rec",)).startswith("no metric scored any of the 1 image (ran: face-rec);")


def test_show_of_a_weight_index_in_one_shard_says_shard_in_the_singular():
    rows, _ = index_rows({"identities": [{"name": "a", "shard": "shard-00000"}, {"name": "b", "shard": "shard-00000"}]})
    assert dict(rows)["identities"] == "2 in 1 shard"


def test_a_device_past_the_only_gpu_names_one_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(LowdimError, match=r"this machine has 1 CUDA device, cuda:0 to cuda:0$"):
        resolve_device("cuda:1")


@pytest.mark.parametrize(("loose", "said"), [(1, "1 image beside the identity sub-folders is ignored"),
                                              (2, "2 images beside the identity sub-folders are ignored")])
def test_precompute_names_loose_images_beside_identity_folders_in_their_number(tmp_path, loose, said):
    from PIL import Image

    from lowdim_sd.precompute import discover_identities

    (tmp_path / "ann").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ann" / "a.png")
    for index in range(loose):
        Image.new("RGB", (8, 8)).save(tmp_path / f"loose{index}.png")
    with pytest.warns(UserWarning, match=said):
        assert [identity.name for identity in discover_identities(tmp_path)] == ["ann"]
