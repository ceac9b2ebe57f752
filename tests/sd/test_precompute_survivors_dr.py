"""Review DR's surviving mutants of the precomputed weight folder, pinned (finished by FFV): a picture saved while
train-hypernet's start check reads it is seen as changed, the crop cache drops the crop read longest ago (not one
just read), and a weight index records the crop margin precompute used, which train-hypernet crops with."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lowdim_sd import checked_pictures
from lowdim_sd.checked_pictures import CheckedPictures
from lowdim_sd.crop_cache import CropCache
from lowdim_sd.precompute_header import recorded_settings
from lowdim_sd.train import TrainConfig


def _replace(path: Path, data: bytes) -> None:
    """Save ``data`` over ``path`` the way an editor does: a new file renamed over the old one."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def test_a_picture_saved_while_the_start_check_reads_it_is_seen_as_changed(tmp_path, monkeypatch):
    picture = tmp_path / "a.bmp"
    picture.write_bytes(b"\x01" * 64)
    digest = checked_pictures.image_digest

    def read_then_saved_over(path: Path) -> str:
        seen = digest(path)
        _replace(picture, b"\x02" * 80)  # the user saves an edit just as the start check finished reading
        return seen

    monkeypatch.setattr(checked_pictures, "image_digest", read_then_saved_over)
    held = CheckedPictures()
    held.hold(picture)
    monkeypatch.setattr(checked_pictures, "image_digest", digest)
    assert not held.unchanged(picture), "the edit saved during the start check trains on unchecked"


def test_the_crop_cache_keeps_the_picture_read_most_recently_and_drops_the_one_read_longest_ago():
    cropped: list[str] = []  # each crop the detector had to make again

    def crop(key: str) -> torch.Tensor:
        cropped.append(key)
        return torch.zeros(3, 4, 4)

    cache = CropCache(max_bytes=2 * 3 * 4 * 4)  # room for two 8-bit crops
    for key in ("a", "b", "a", "c"):  # a read again before c: b is then the one read longest ago
        cache.crop(key, lambda key=key: crop(key))
    assert cropped == ["a", "b", "c"]
    cache.crop("a", lambda: crop("a"))
    assert cropped == ["a", "b", "c"], "the cache dropped the crop read last, not the one read longest ago"


def test_a_folder_precomputed_with_another_crop_margin_records_that_margin_for_train_hypernet():
    settings = recorded_settings(TrainConfig(), crop=True, margin=0.25, face_index=None)
    assert settings["crop_margin"] == 0.25, "train-hypernet would crop the pictures otherwise than precompute did"
