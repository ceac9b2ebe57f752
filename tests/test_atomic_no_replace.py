"""``atomic_write(replace=False)`` and ``replace_folder(replace=False)`` publish only where nothing is there at
that moment: what another run put there meanwhile stays, and the temp goes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lowdim.atomic import atomic_write, replace_folder, temp_place
from lowdim.files import atomic_save


def test_a_file_is_published_where_the_name_is_free(tmp_path):
    out = tmp_path / "a.json"
    atomic_write(out, lambda temp: Path(temp).write_text("new"), replace=False)
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_file_that_appeared_meanwhile_is_kept(tmp_path):
    out = tmp_path / "a.json"

    def write(temp):
        Path(temp).write_text("mine")
        out.write_text("theirs")  # the other run finished first

    with pytest.raises(FileExistsError):
        atomic_write(out, write, replace=False)
    assert out.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_safetensors_save_passes_the_choice_on_and_replaces_by_default(tmp_path):
    import torch

    out = tmp_path / "a.safetensors"
    out.write_text("theirs")
    with pytest.raises(FileExistsError):
        atomic_save({"x": torch.zeros(1)}, {}, out, replace=False)
    assert out.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
    atomic_save({"x": torch.zeros(1)}, {}, out)
    assert out.read_bytes() != b"theirs"


@pytest.mark.parametrize("there", ["nothing", "empty folder", "full folder", "file"])
def test_a_folder_is_published_only_onto_nothing_or_an_empty_folder(tmp_path, there):
    out = tmp_path / "M"
    if there == "file":
        out.write_text("theirs")
    elif there != "nothing":
        out.mkdir()
        if there == "full folder":
            (out / "theirs").write_text("theirs")
    with temp_place(out) as staging:
        staging.mkdir()
        (staging / "mine").write_text("mine")
        if there in ("nothing", "empty folder"):
            replace_folder(staging, out, replace=False)
        else:
            with pytest.raises(FileExistsError):
                replace_folder(staging, out, replace=False)
    if there in ("nothing", "empty folder"):
        assert [p.name for p in out.iterdir()] == ["mine"]
    elif there == "file":
        assert out.read_text() == "theirs"
    else:
        assert [p.name for p in out.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["M"]


@pytest.fixture
def no_hard_links(monkeypatch):
    """A file system without hard links (FAT, some network mounts): os.link refuses, as it does there."""
    def refused(source, destination):
        raise OSError(errno.EPERM, "Operation not permitted", str(source), None, str(destination))

    monkeypatch.setattr(os, "link", refused)


@pytest.mark.parametrize("there", ["nothing", "file", "dangling link"])
def test_without_hard_links_a_file_is_still_published_only_where_nothing_is(tmp_path, no_hard_links, there):
    """A link whose target is gone is still something at the name: the user's, never replaced."""
    out = tmp_path / "a.safetensors"
    if there == "file":
        out.write_text("theirs")
    elif there == "dangling link":
        out.symlink_to(tmp_path / "gone")
    if there == "nothing":
        atomic_write(out, lambda temp: Path(temp).write_text("mine"), replace=False)
        assert out.read_text() == "mine"
    else:
        with pytest.raises(FileExistsError):
            atomic_write(out, lambda temp: Path(temp).write_text("mine"), replace=False)
        assert out.is_symlink() == (there == "dangling link")
        assert there == "dangling link" or out.read_text() == "theirs"
    assert os.listdir(tmp_path) == ["a.safetensors"]
