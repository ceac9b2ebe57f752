"""A write the disk refuses (full, a file-size limit, a name too long) is one line naming the file and the OS's
reason, with nothing left behind; a name the file system accepts is written, however long (review AS1, AS2)."""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from lowdim.atomic import atomic_write, replace_folder, sweep_temps, temp_place
from lowdim.errors import LowdimError
from lowdim.files import atomic_save


@pytest.fixture
def small_file_limit():
    """Files of at most 60 KB, as `ulimit -f 60` sets (Python ignores SIGXFSZ: the write gets EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (60 * 1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_save_over_the_file_size_limit_is_one_line_and_leaves_nothing(tmp_path, small_file_limit):
    out = tmp_path / "big é.safetensors"
    with pytest.raises(LowdimError) as refused:
        atomic_save({"w": torch.zeros(64 * 1024)}, {}, out)
    assert str(refused.value) == f"{out}: could not write (File too large)"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
])
def test_a_full_disk_during_the_write_is_one_line_naming_the_file(tmp_path, failure):
    def write(temp: str) -> None:
        Path(temp).write_bytes(b"half")
        raise failure

    with pytest.raises(LowdimError, match=r"^.*e\.safetensors: could not write \(No space left on device\)$"):
        atomic_write(tmp_path / "e.safetensors", write)
    assert os.listdir(tmp_path) == []


def test_a_bug_in_the_writer_keeps_its_own_error(tmp_path):
    def write(temp: str) -> None:
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        atomic_write(tmp_path / "e.safetensors", write)


def test_a_name_the_file_system_takes_is_written_however_long(tmp_path):
    for name in ["n" * 240 + ".safetensors", "日本🎉" * 20 + ".safetensors"]:  # 252 and 252 bytes
        out = tmp_path / name
        atomic_save({"w": torch.ones(2)}, {}, out)
        assert out.is_file() and os.listdir(tmp_path) == [name]
        out.unlink()


def test_a_killed_long_named_writes_place_is_swept(tmp_path):
    name = "日本" * 40 + ".safetensors"  # 252 bytes
    with temp_place(tmp_path / name) as temp:
        place_name = temp.parent.name
        assert len(os.fsencode(place_name)) <= 255
    for target in (name, None):  # a sweep for the file, and a sweep of a run's folder
        (tmp_path / place_name).mkdir()  # what a write killed outright leaves: its place, holding its temp
        (tmp_path / place_name / name).write_bytes(b"half")
        os.utime(tmp_path / place_name, (0, 0))
        assert list(sweep_temps(tmp_path, target)) == [tmp_path / place_name]
        assert os.listdir(tmp_path) == []


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path):
    out = tmp_path / ("n" * 300 + ".safetensors")
    with pytest.raises(LowdimError, match=r"could not write \(File name too long; \d+ bytes at most\)$"):
        atomic_save({"w": torch.ones(2)}, {}, out)  # the most this file system takes, to shorten the name to
    assert os.listdir(tmp_path) == []


def test_a_serializing_bug_keeps_its_own_error(tmp_path):
    def write(temp: str) -> None:
        raise SafetensorError("Error while serializing: tensor 'w' is not contiguous")

    with pytest.raises(SafetensorError, match="not contiguous"):
        atomic_write(tmp_path / "e.safetensors", write)


@pytest.mark.parametrize("failure", [OSError(errno.EIO, "Input/output error"), KeyboardInterrupt()],
                         ids=["a failed rename", "a Ctrl-C between the renames"])
def test_a_folder_replace_that_fails_halfway_puts_the_earlier_folder_back_whole(tmp_path, monkeypatch, failure):
    """`merge --overwrite` moves the earlier model aside, then renames the new one in: when that second rename fails,
    the earlier model is back under its own name, not left in a hidden temp place."""
    out, staging = tmp_path / "merged", tmp_path / "staging"
    for folder, text in ((out, "the earlier model"), (staging, "the new model")):
        folder.mkdir()
        (folder / "model.safetensors").write_text(text)
    rename = os.replace

    def new_folder_refused(source, destination):
        if Path(source) == staging:
            raise failure
        rename(source, destination)

    monkeypatch.setattr(os, "replace", new_folder_refused)
    with pytest.raises(type(failure)):
        replace_folder(staging, out)
    monkeypatch.undo()
    assert (out / "model.safetensors").read_text() == "the earlier model"
    assert sorted(os.listdir(tmp_path)) == ["merged", "staging"]  # nothing hidden left behind
