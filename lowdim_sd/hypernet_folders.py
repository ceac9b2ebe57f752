"""A folder given where a hypernetwork file goes (``--hypernet``) that holds none at its top: a weight folder (the
user skipped phase 1) or train-hypernet checkpoints, named for what it is, with the file to pass. Any other folder
is left to ``lowdim.given_folder``'s line, which names the hypernetwork file a folder holds."""

from __future__ import annotations

import os
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.foreign_files import safetensors_metadata
from lowdim.hyper.storage import FORMAT
from lowdim_sd import weight_index
from lowdim_sd.checkpoint_reading import step_folders
from lowdim_sd.checkpoints import FOLDER as CHECKPOINTS

HYPERNET_FILE = "hypernet.safetensors"  # what train-hypernet writes in its --out and in each step folder


def refuse_a_folder_without_one(path: Path) -> None:
    """One line naming what ``path`` is, when it is a weight folder or a folder of train-hypernet checkpoints
    holding no hypernetwork file at its top; nothing otherwise (a file, or another folder: read_hypernet's line)."""
    if not path.is_dir() or any(is_hypernet(file) for file in sorted(path.glob("*.safetensors"))[:100]):
        return
    if is_weight_folder(path):
        raise LowdimError(f"{path}{os.sep} is a precomputed weight folder (lowdim precompute), not a hypernetwork: "
                          f"train a hypernetwork on it with `lowdim train-hypernet -w {path}` first")
    run, newest = _newest_checkpoint(path)
    if newest is None:
        return
    finished = run / HYPERNET_FILE
    if is_hypernet(finished):  # given the checkpoints folder of a finished run
        rest = f"or the finished run's {finished}"
    else:  # a run stopped before its end
        rest = "or finish the run: its train-hypernet command again with --resume"
    raise LowdimError(f"{path}{os.sep} holds train-hypernet checkpoints; the newest is {newest}: pass that, {rest}")


def is_hypernet(file: Path) -> bool:
    try:  # headers only; a FIFO is no file (its open would wait)
        return file.is_file() and (safetensors_metadata(file) or {}).get("format") == FORMAT
    except OSError:
        return False


def is_weight_folder(folder: Path) -> bool:
    index = folder / weight_index.INDEX
    if not index.is_file():
        return False
    try:
        recorded = weight_index.read_json(index)
    except LowdimError:  # unreadable: not told as a weight folder
        return False
    return isinstance(recorded, dict) and recorded.get("format") == weight_index.FORMAT


def _newest_checkpoint(path: Path) -> tuple[Path, Path | None]:
    """(the run's --out folder, the newest complete step folder's hypernetwork) of ``path``, a run's --out folder
    or its checkpoints folder; None when it holds no checkpoint."""
    run = path.parent if path.name == CHECKPOINTS else path
    for folder in reversed(step_folders(run / CHECKPOINTS)):  # by step number, newest first
        file = folder / HYPERNET_FILE
        if (folder / "state.json").is_file() and is_hypernet(file):  # state.json is written last: complete
            return run, file
    return run, None
