"""The pictures a training run checked at its start, held to those bytes while it reads them again each epoch: one
replaced mid-run would otherwise train on new pixels without a word."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lowdim.errors import LowdimError
from lowdim_sd.weight_index import image_digest

FileState = tuple[int, int, int]  # inode, size, modification time in ns
Read = TypeVar("Read")
READ_TRIES = 3  # a picture saved over while it is read, again and again: someone is still writing it


def file_state(path: Path) -> FileState | None:
    """What a stat tells of a plain file's content, or None for a file that is not one (or gone)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns) if stat.S_ISREG(found.st_mode) else None


class CheckedPictures:
    """Each picture a run checked at its start, by the digest it had then, with what a stat told of it then: a
    weight folder's pictures matched to the digests precompute recorded (``WeightDataset.check_same_pictures``),
    --extra-images as the run found them (``hold``; a resume compares those with its checkpoint's record).

    Comparing a stat per read is cheap, where a digest per read is not (train-hypernet reads every picture each
    epoch); only a picture whose stat changed is digested again, so one touched or saved again with the same
    bytes trains on. Pictures the check did not see (none recorded for them) are not compared."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[FileState, str]] = {}

    def record(self, path: Path, state: FileState, digest: str) -> None:
        self._seen[path] = (state, digest)

    def hold(self, path: Path) -> str | None:
        """The digest ``path`` is held to: the one recorded when this run first saw it, else that of the bytes it
        has now, recorded so. Every reader at the start asks here, so a picture is read once however many check
        it, and all of them hold it to the same bytes (a later change is ``unchanged``'s to find). None for one
        gone or not a file: left to its reader, whose error names it as gone."""
        if path in self._seen:
            return self._seen[path][1]
        seen = file_state(path)  # before the digest: a change while it is read shows as one later
        if seen is None:
            return None
        try:
            digest = image_digest(path)
        except OSError:  # gone between the stat and the read: as gone
            return None
        self.record(path, seen, digest)
        return digest

    def unchanged(self, path: Path) -> bool:
        """Whether ``path`` still has the bytes it was checked with (True for one never checked). A picture
        gone since is left to its reader, whose error names it as gone."""
        if path not in self._seen:
            return True
        seen, digest = self._seen[path]
        now = file_state(path)
        if now is None or now == seen:
            return True
        try:
            same = image_digest(path) == digest
        except OSError:  # gone between the stat and the digest: as gone
            return True
        if same:
            self._seen[path] = (now, digest)  # this process digests it again only on its next change
        return same


def read_as_digested(path: Path, read: Callable[[Path], Read]) -> tuple[Read, str]:
    """``read(path)`` (a decoder, given the path) with the digest of the bytes it read: the picture is held to its
    digest, read, then compared as a ``CheckedPictures`` check compares it, so one saved over during the read is
    read again rather than paired with a digest of other bytes (precompute's index pairs θ with these digests).
    A picture gone or unreadable is left to ``read``, whose error names it."""
    for _ in range(READ_TRIES):
        pictures = CheckedPictures()
        digest = pictures.hold(path)
        value = read(path)
        if digest is not None and file_state(path) is not None and pictures.unchanged(path):
            return value, digest
    raise LowdimError(f"{path}: changed each of the {READ_TRIES} times it was read (is it still being written?); "
                      f"rerun once it is saved")
