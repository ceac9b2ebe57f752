"""Putting what was written on the disk before the name that publishes it (``lowdim.atomic``'s writes).

A rename can reach the disk before the bytes of the file it names: after a power cut the new name may then hold an
empty or torn file. Flushing the file before its rename, and the folder after it, keeps atomic writes atomic
across a power cut too, not only across a crash or Ctrl-C.
"""

from __future__ import annotations

import os
from pathlib import Path


def flush_to_disk(path: Path) -> None:
    """Ask the OS to put ``path`` (a file's bytes, a folder's names) on the disk now: a rename may reach the disk
    before the bytes it names, so without this a power cut after a write could leave the new name on an empty or
    torn file. A file system that cannot (some network mounts, Windows for a folder) is left to its own pace."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO put there must not hang us
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def flush_tree_to_disk(folder: Path) -> None:
    """``flush_to_disk`` for every file and folder under ``folder`` (a staged model, before its rename)."""
    for root, _, names in os.walk(folder):
        for name in names:
            flush_to_disk(Path(root) / name)
        flush_to_disk(Path(root))
