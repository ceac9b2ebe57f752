"""An atomic write puts the file's bytes on the disk before the rename that names it, and the rename after: a
rename may otherwise reach the disk first, and a power cut leave the new name on an empty file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from lowdim import atomic, disk_flush


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, str]]:
    """What reached the OS, in order: ("flush", path), ("rename", target) and ("link", target)."""
    seen: list[tuple[str, str]] = []
    flush, replace, link = disk_flush.flush_to_disk, os.replace, os.link

    def flushing(path):
        seen.append(("flush", str(path)))
        flush(path)

    def renaming(source, target):
        seen.append(("rename", str(target)))
        replace(source, target)

    def linking(source, target):
        seen.append(("link", str(target)))
        link(source, target)

    monkeypatch.setattr(atomic, "flush_to_disk", flushing)
    monkeypatch.setattr(disk_flush, "flush_to_disk", flushing)  # flush_tree_to_disk's calls
    monkeypatch.setattr(atomic.os, "replace", renaming)
    monkeypatch.setattr(atomic.os, "link", linking)
    return seen


@pytest.mark.parametrize("replace", [True, False], ids=["replacing", "only-where-free"])
def test_a_file_is_on_the_disk_before_its_name_and_the_name_after(tmp_path, events, replace):
    target = tmp_path / "adapter.safetensors"
    atomic.atomic_write(target, lambda name: Path(name).write_bytes(b"weights"), replace=replace)

    assert target.read_bytes() == b"weights"
    published = next(i for i, (kind, path) in enumerate(events) if kind in ("rename", "link") and path == str(target))
    flushed_before = [path for kind, path in events[:published] if kind == "flush"]
    assert any(Path(path).name == target.name and Path(path) != target for path in flushed_before), events
    assert ("flush", str(tmp_path)) in events[published + 1:], events


def test_a_folder_s_files_are_on_the_disk_before_it_is_renamed(tmp_path, events):
    out = tmp_path / "model"
    with atomic.temp_place(out) as staging:
        (staging / "unet").mkdir(parents=True)
        (staging / "unet" / "config.json").write_text("{}")
        (staging / "model_index.json").write_text("{}")
        atomic.replace_folder(staging, out)

    assert (out / "unet" / "config.json").read_text() == "{}"
    renamed = events.index(("rename", str(out)))
    flushed = {Path(path).name for kind, path in events[:renamed] if kind == "flush"}
    assert {"config.json", "model_index.json", "unet"} <= flushed, events
    assert ("flush", str(tmp_path)) in events[renamed + 1:], events


def test_a_file_system_that_cannot_flush_still_gets_the_file(tmp_path, monkeypatch):
    """Some network mounts answer fsync with EINVAL: the write goes on, at the file system's own pace."""
    def refuse(handle):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(disk_flush.os, "fsync", refuse)
    target = atomic.atomic_write(tmp_path / "a.json", lambda name: Path(name).write_text("{}"))
    assert target.read_text() == "{}"


def test_flushing_what_cannot_be_opened_is_no_error(tmp_path):
    disk_flush.flush_to_disk(tmp_path / "gone")  # no exception: there is nothing of it to put on the disk


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_not_waited_on(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    disk_flush.flush_to_disk(fifo)  # returns: no writer is waited for


def test_a_flush_the_disk_fails_fails_the_write_and_keeps_the_old_file(tmp_path, monkeypatch):
    """An I/O error at the flush means the bytes may never reach the disk: the write is no success, and the old
    file stays where it was."""
    from lowdim.errors import LowdimError

    target = tmp_path / "a.json"
    target.write_text("old")

    def broken(handle):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(disk_flush.os, "fsync", broken)
    monkeypatch.setattr(disk_flush, "fcntl", None)
    with pytest.raises(LowdimError, match=r"a\.json: could not write \(Input/output error\)"):
        atomic.atomic_write(target, lambda name: Path(name).write_text("new"))
    assert target.read_text() == "old"


def test_a_file_is_flushed_through_a_handle_that_may_write(tmp_path, monkeypatch):
    """Windows flushes no handle opened read-only (EBADF): a file's flush opens it for writing."""
    opened = []
    real_open = disk_flush.os.open

    def recording(path, flags, *args):
        opened.append((Path(path).name, flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)))
        return real_open(path, flags, *args)

    monkeypatch.setattr(disk_flush.os, "open", recording)
    atomic.atomic_write(tmp_path / "a.json", lambda name: Path(name).write_text("{}"))
    assert ("a.json", os.O_RDWR) in opened and (tmp_path.name, os.O_RDONLY) in opened


def test_a_file_its_owner_may_only_read_is_flushed_read_only(tmp_path, monkeypatch):
    """A umask that leaves written files read-only: the flush still happens, through a read-only handle."""
    flushed = []
    real_open, real_fsync = disk_flush.os.open, disk_flush.os.fsync

    def refusing_writers(path, flags, *args):
        if flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(disk_flush.os, "open", refusing_writers)
    monkeypatch.setattr(disk_flush.os, "fsync", lambda handle: flushed.append(handle) or real_fsync(handle))
    monkeypatch.setattr(disk_flush, "fcntl", None)
    disk_flush.flush_to_disk(atomic.atomic_write(tmp_path / "a.json", lambda name: Path(name).write_text("{}")))
    assert len(flushed) >= 3  # the temp, its folder after the rename, and the file asked for here


def test_a_folder_flush_the_disk_fails_after_the_rename_warns_and_the_write_stands(tmp_path, monkeypatch):
    """The new file is whole and in place: an I/O error flushing its folder is said, not a failed write."""
    target = tmp_path / "a.json"
    real_fsync = disk_flush.os.fsync

    def folder_refused(handle):
        if stat.S_ISDIR(os.fstat(handle).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(handle)

    monkeypatch.setattr(disk_flush.os, "fsync", folder_refused)
    monkeypatch.setattr(disk_flush, "fcntl", None)
    with pytest.warns(UserWarning, match=r"a\.json: written, but its folder could not be flushed .*Input/output"):
        atomic.atomic_write(target, lambda name: Path(name).write_text("new"))
    assert target.read_text() == "new"
