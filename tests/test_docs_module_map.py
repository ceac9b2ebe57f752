"""docs/architecture.md's module map ("Who owns what") names every module of lowdim/, lowdim_sd/ and cli/, so a
reader looking for the code behind a command or an API finds its row, and a new module cannot be left out.

A row names its modules by file name, under the folders of the paths in its first cell (`lowdim/files.py`,
`atomic.py` is lowdim/atomic.py); `precompute.py (+ _header, _resume)` names precompute_header.py and
precompute_resume.py too, and `files.py` (+ `layer_lists.py`) names layer_lists.py. A package's ``__init__.py``
is named by its folder (`lowdim_sd/ui/`)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lowdim", "lowdim_sd", "cli")
PATH = re.compile(r"`([\w/.]+)`")
MODULE = re.compile(r"(\w+)\.py`?(?:\s*\(\+\s*([^)]*)\))?")


def map_rows() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Who owns what", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "no module map found under '## Who owns what' in docs/architecture.md"
    return rows


def row_folders(row: str) -> set[str]:
    """The folders of the paths in the row's first cell; a bare file name is in the folder named before it."""
    folders, current = set(), ""
    for path in PATH.findall(row.split("|")[1]):
        if "/" in path:
            current = path if path.endswith("/") else path.rsplit("/", 1)[0] + "/"
        folders.add(current)
    return folders - {""}


def row_modules(row: str) -> set[str]:
    """Every file name the row says, the shorthand's included."""
    names = set()
    for stem, added in MODULE.findall(row):
        names.add(stem + ".py")
        for item in filter(None, (item.strip().strip("`") for item in added.split(","))):
            names.add((stem + item if item.startswith("_") else item.removesuffix(".py")) + ".py")
    return names


def named_modules() -> set[str]:
    named = set()
    for row in map_rows():
        folders = row_folders(row)
        named.update(folders)  # a package named by its folder: its __init__.py
        named.update(folder + name for folder in folders for name in row_modules(row))
        named.update(path for path in PATH.findall(row) if path.endswith(".py"))  # a full path anywhere
    return {name[: -len("/")] + "/__init__.py" if name.endswith("/") else name for name in named}


def all_modules() -> list[str]:
    return sorted(path.relative_to(ROOT).as_posix() for package in PACKAGES
                  for path in (ROOT / package).rglob("*.py") if "__pycache__" not in path.parts)


def test_every_module_is_in_the_map():
    named = named_modules()
    missing = [module for module in all_modules() if module not in named]
    assert not missing, "docs/architecture.md's 'Who owns what' leaves out: " + ", ".join(missing)


def test_the_map_names_no_module_that_is_gone():
    """A renamed or removed module must leave the map too: each file a row names is in one of its folders."""
    stale = [f"{name} (in {', '.join(sorted(folders))})" for row in map_rows()
             for folders in [row_folders(row)] for name in sorted(row_modules(row))
             if not any((ROOT / folder / name).is_file() for folder in folders)]
    stale += [path for row in map_rows() for path in PATH.findall(row)
              if path.endswith(".py") and "/" in path and not (ROOT / path).is_file()]
    assert not stale, "docs/architecture.md's 'Who owns what' names files that do not exist: " + ", ".join(stale)


def test_the_shorthand_and_folders_are_read_as_documented():
    row = ("| `lowdim_sd/precompute.py` (+ `_header`, _resume), `weight_index.py`, `lowdim/x/` | `y.py` (+ `z.py`) "
           "| w |")
    assert row_folders(row) == {"lowdim_sd/", "lowdim/x/"}
    assert row_modules(row) == {"precompute.py", "precompute_header.py", "precompute_resume.py",
                                "weight_index.py", "y.py", "z.py"}
