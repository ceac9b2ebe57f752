"""Putting what was written on the disk before the name that publishes it (``lowdim.atomic``'s writes).

A rename can reach the disk before the bytes of the file it names: after a power cut the new name may then hold an
empty or torn file. Flushing the file before its rename, and the folder after it, keeps atomic writes atomic
across a power cut too, not only across a crash or Ctrl-C.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import ModuleType

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

# What a file system says when it cannot flush, or cannot open a folder to flush it (Windows): nothing was lost,
# it keeps its own pace. Any other error (EIO, ENOSPC, EDQUOT) means the bytes may not be on the disk: raised.
CANNOT_FLUSH = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES, errno.EPERM,
                          errno.EISDIR, errno.ENOENT})


def flush_to_disk(path: Path) -> None:
    """Ask the OS to put ``path`` (a file's bytes, a folder's names) on the disk now, past the drive's own cache
    where the OS can say so (macOS's F_FULLFSYNC). Raises the OSError of a flush that failed for the disk's reason
    (an I/O error, a full disk): the write must not pass for done."""
    handle = _opened(path)
    if handle is None:
        return
    try:
        _flush(handle)
    except OSError as error:
        if error.errno not in CANNOT_FLUSH:
            raise
    finally:
        os.close(handle)


def _opened(path: Path) -> int | None:
    """A handle to flush ``path`` through, None where it cannot be opened for that. A file is opened for writing
    where it may be (Windows flushes no handle opened read-only), else read-only (a umask that left it so)."""
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # a FIFO put there is opened without waiting for a writer
    modes = [os.O_RDONLY] if os.path.isdir(path) else [os.O_RDWR, os.O_RDONLY]
    for mode in modes:
        try:
            return os.open(path, mode | nonblocking)
        except OSError as error:
            if error.errno not in CANNOT_FLUSH and error.errno != errno.ENXIO:
                raise
    return None


def _flush(handle: int) -> None:
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if fcntl is not None and full is not None:
        try:
            fcntl.fcntl(handle, full)
            return
        except OSError:  # a file system without it (network, FAT): the plain flush below
            pass
    os.fsync(handle)


def flush_tree_to_disk(folder: Path) -> None:
    """``flush_to_disk`` for every file and folder under ``folder`` (a staged model, before its rename)."""
    for root, _, names in os.walk(folder):
        for name in names:
            flush_to_disk(Path(root) / name)
        flush_to_disk(Path(root))
