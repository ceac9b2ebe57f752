"""A path a user typed, its leading ``~`` expanded as a shell expands it.

``Path.expanduser`` raises RuntimeError ("Could not determine home directory") for ``~name`` when this machine has
no user ``name``. bash leaves such a word as written, and so does this: ``~name`` is then a legal folder name in
the working folder, and a command given it goes on with that path, or refuses it by its name as it refuses any
path that is not there, as every other program the user runs would see the same word.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeGuard


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` (the home folder) or ``~name`` (user name's) expanded; a ``~name`` of no user
    here, or a ``~`` where no home folder is known, is left as written, as bash leaves it."""
    return Path(os.path.expanduser(path))  # os.path's leaves an unknown user's ~ alone, where Path's raises


def is_plain_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` (read from a file lowdim or a stranger wrote) is a plain file name: a str naming a file
    right in one folder, never a path out of it (``..``, ``a/b``, an absolute path) nor the folder itself."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


def named(path: Path) -> Path:
    """``path`` with a name: '.' and '..' (a command run from inside a folder) have none, so those are made
    absolute; any other path is kept as given, relative or not."""
    return Path(os.path.abspath(path)) if path.name in ("", ".", "..") else path
