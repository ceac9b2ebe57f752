"""A folder handed over where a lowdim .safetensors file goes (``personalize -o me``'s ``me/``): the line that
names the file inside it to pass instead, told from the files' headers alone."""

from __future__ import annotations

import os
from pathlib import Path

from lowdim.foreign_files import safetensors_metadata

FEW = 4  # files of a folder named in its line; more are counted


def folder_line(folder: Path, fmt: str, kind: str, typed_after: str = "", what_else: str = "") -> str:
    """A folder given where a file goes (``personalize -o me``'s, most likely): the files of ``fmt`` it holds,
    told by their headers alone, named as the path to pass. ``typed_after``: what the user wrote after the folder's
    path (``-a me:0.5``'s ``:0.5``), kept in the argument suggested, so that copying it loses nothing.
    ``what_else``: the caller's line for a folder holding none, where its backend knows what the folder is instead
    (a whole model it wrote, to pass as the model); the generic line without one."""
    held = []
    files = [path for path in sorted(folder.glob("*.safetensors")) if path.is_file()]  # a FIFO's open would wait
    for candidate in files[:100]:  # a folder of checkpoints: headers only, and a hundred at most
        try:
            if (safetensors_metadata(candidate) or {}).get("format") == fmt:
                held.append(candidate)
        except OSError:
            continue  # unreadable: not one to pass
    if len(held) == 1:
        argument = f"{held[0]}{typed_after}" if typed_after else "that"
        return f"{folder}{os.sep} is a folder; its {kind} is {held[0]}: pass {argument}"
    if held:
        more = f" and {len(held) - FEW} more" if len(held) > FEW else ""
        keep = f", with {typed_after} after it" if typed_after else ""
        return (f"{folder}{os.sep} is a folder of {len(held)} {kind}s ({', '.join(map(str, held[:FEW]))}{more}): "
                f"pass one of them{keep}")
    return what_else or f"{folder}{os.sep} is a folder with no lowdim {kind} in it; expected a .safetensors {kind} file"
