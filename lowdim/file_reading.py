"""What a path given as a file is, before anything opens it: what a reader of a lowdim file refuses first.

A path that is no regular file is named as what it is: a FIFO, a device or a socket (opening one waits for a
writer, in a call no Ctrl-C ends when Rust or C makes it), or a symbolic link that leads to itself (every look at it
fails, so it would read as "no such file" though the link is there). An empty file is said to be empty, not "header
too small" (``lowdim.files.read_checked`` and ``lowdim show`` ask it before reading a header).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from lowdim.errors import AdapterFileError, LowdimError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# What a path is that is neither a regular file nor a folder (``special_kind``).
SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                 (stat.S_ISSOCK, "a socket"))
LINK_LOOP = "a symbolic link that leads to itself (a loop)"
EMPTY = "empty (0 bytes)"


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """'a FIFO', 'a character device', 'a block device' or 'a socket' for what ``path`` is (a link followed); None
    for a regular file, a folder, or a path that is not there (or cannot be looked at: its use says why). Asked
    before any open: opening a FIFO waits for a writer, in a call no Ctrl-C ends when Rust (safetensors) or C
    makes it, as they retry the open themselves."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((word for test, word in SPECIAL_KINDS if test(mode)), None)


def is_link_loop(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a symbolic link whose chain of links comes back to itself: it is there (``is_symlink``),
    yet ``exists()`` and ``is_file()`` say False, as they follow it."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    except ValueError:  # a NUL in the path: no file at all
        return False
    return False


def not_a_file(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is where it is there but neither a regular file nor a folder (a link loop, a FIFO, a device, a
    socket), in the words a refusal uses; None otherwise (a file, a folder, or nothing there)."""
    if is_link_loop(path):
        return LINK_LOOP
    kind = special_kind(path)
    return f"not a regular file ({kind})" if kind else None


def refuse_special(path: str | os.PathLike[str]) -> None:
    """One line naming ``path`` when it is a FIFO, a device, a socket or a link loop, where a file or a folder is
    wanted."""
    if (what := not_a_file(path)) is not None:
        raise LowdimError(f"{Path(path)}: {what}; give a file or a folder")


def is_empty(path: Path) -> bool:
    """Whether the regular file ``path`` holds no byte (a copy or a write that never began: no header to read)."""
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise AdapterFileError(
            f"{path}: '{path.suffix}' files can hold pickled code; lowdim reads and writes .safetensors only"
        )
