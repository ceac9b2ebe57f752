"""Links into or out of a run folder of ``lowdim ui --out``, which lowdim never makes: a run folder or ``run.json``
that is a symlink, and a run file with a hard link outside its folder (a backup made with ``cp -al``). The page
serves a run's files and reads its record, so such a run is left out of *Earlier runs*; this module finds the link
and names it with what to do, in the start line and in Open's refusal."""

from __future__ import annotations

import os
from pathlib import Path

from lowdim.errors import LowdimError

RUN_FILE = "run.json"
HARD_LINK_HINT = "a backup made with hard links, cp -al?"


class HardLinkedRun(LowdimError):
    """A run left out because ``file`` in it (relative to its folder) is also linked from outside its folder."""

    def __init__(self, folder: Path, file: str) -> None:
        self.file = file
        super().__init__(f"run '{folder.name}' in {folder.parent} is left out: {file} is also linked from outside "
                         f"its folder ({HARD_LINK_HINT}); copy the run's folder with cp -a (not -al) to open it")


def linked_part(folder: Path) -> Path | None:
    """The run folder itself, or its ``run.json``, where that is a symlink (lowdim writes neither as one): the
    page would serve the files of a run found wherever a folder link leads, and read a record from wherever a
    ``run.json`` link leads. None for a run as lowdim writes it."""
    return next((path for path in (folder, folder / RUN_FILE) if path.is_symlink()), None)


def link_target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:  # removed since it was seen
        return "?"


def check_own_record(folder: Path) -> None:
    """Refuse a ``run.json`` with a name outside its run folder: it is read, not served, but what another name of
    it outside the run writes, the page would show as the run's."""
    if named_outside(folder / RUN_FILE, folder):
        raise HardLinkedRun(folder, RUN_FILE)


def named_outside(file: Path, folder: Path) -> bool:
    """Whether the plain file ``file`` has a name (a hard link) outside ``folder``: the same file as one outside,
    which lowdim never makes. Its own links (a download linked to the run's adapter, ``write_record``) are inside."""
    try:
        seen = file.stat()
    except OSError:
        return True
    if seen.st_nlink <= 1:
        return False
    inside = 0
    for parent, _, names in os.walk(folder):  # symlinks are not followed: each regular name counted once
        for name in names:
            try:
                other = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            inside += (other.st_ino, other.st_dev) == (seen.st_ino, seen.st_dev)
    return seen.st_nlink > inside


def first_few(names: list[str], shown: int = 3) -> str:
    """The first ``shown`` of ``names`` for one line, then ', ...' if there are more."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def symlinked_line(out: Path, links: dict[str, Path]) -> str:
    """The start line's clause on runs left out as symlinks (``links``: run name -> the link), or ''."""
    if not links:
        return ""
    shown = first_few([f"{link} -> {link_target(link)}" for link in links.values()])
    if len(links) == 1:
        return (f"1 run in {out} is left out as a symlink, which lowdim never makes ({shown}): replace the link "
                f"with a copy of what it leads to")
    return (f"{len(links)} runs in {out} are left out as symlinks, which lowdim never makes ({shown}): replace each "
            f"link with a copy of what it leads to")


def hard_linked_line(out: Path, files: dict[str, str]) -> str:
    """The start line's clause on runs left out as hard-linked out (``files``: run name -> the file named), or ''."""
    if not files:
        return ""
    shown = first_few([f"{out / name}/{file}" for name, file in files.items()])
    if len(files) == 1:
        return (f"1 run in {out} is left out as a file of it is also linked from outside its folder ({shown}; "
                f"{HARD_LINK_HINT}): copy the run's folder with cp -a (not -al) to open it")
    return (f"{len(files)} runs in {out} are left out as a file of each is also linked from outside its folder "
            f"({shown}; {HARD_LINK_HINT}): copy each run's folder with cp -a (not -al) to open it")
