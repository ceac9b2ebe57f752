"""Writes that never leave half a file: a temp file beside the target, renamed over it in one step.

Every file lowdim writes (adapters, hypernetworks, weight shards, indexes, records) goes through here, so a
crash, Ctrl-C or full disk leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lowdim.errors import LowdimError


def atomic_write(path: Path, write: Callable[[str], object]) -> Path:
    """``write(temp)`` fills a temp file beside ``path``, which then replaces ``path`` in one rename:
    readers see the old file or the new one, never half of one, and a failed write leaves nothing."""
    path = Path(path)
    if path.is_dir():
        raise LowdimError(f"{path}: is a folder; give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temp)
        os.chmod(temp, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open() would not
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
