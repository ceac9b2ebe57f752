"""A folder given where a hypernetwork file goes (``--hypernet``) that holds none at its top: a weight folder (the
user skipped phase 1) or train-hypernet checkpoints, named for what it is, with the file to pass. Any other folder
is left to ``lowdim.given_folder``'s line, which names the hypernetwork file a folder holds. And what ``lowdim show``
reads of the run beside a train-hypernet --out's network: its split.json and metrics.jsonl (``run_records``), and a
held-out identity's picture for its use line (``held_out_picture``)."""

from __future__ import annotations

import os
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.foreign_files import safetensors_metadata
from lowdim.hyper.storage import FORMAT
from lowdim.paths import is_plain_name
from lowdim_sd import weight_index
from lowdim_sd.checkpoint_reading import step_folders
from lowdim_sd.checkpoints import FOLDER as CHECKPOINTS

HYPERNET_FILE = "hypernet.safetensors"  # what train-hypernet writes in its --out and in each step folder
SPLIT, METRICS = "split.json", "metrics.jsonl"  # written beside it: the held-out identities, the logged losses


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


Row = tuple[str, str]


def run_records(file: Path, steps: object) -> tuple[list[Row], dict[str, object]]:
    """(rows, --json values) of the run a train-hypernet network ``file`` (recorded at step ``steps``) ends: how
    many identities it trained on and held out, and its last validation in the words the run printed. Nothing unless
    ``file`` sits as the run's network, with split.json or metrics.jsonl beside it: a file copied away shows no
    run's. The validation is shown only where it is of this network: of its step, on split.json's held-out ones."""
    folder = file.parent
    if file.name != HYPERNET_FILE or not isinstance(steps, int) or not any(
            (folder / name).exists() for name in (SPLIT, METRICS)):
        return [], {}
    held_out, identities, counts = _identities(folder / SPLIT)
    values: dict[str, object] = {"identities": counts} if counts else {}
    if held_out == []:  # a run without held-out identities validates nothing
        return [identities, ("last validation", "none: no held-out identities")], values
    said, record = _last_validation(folder / METRICS, steps, held_out)
    if record is not None:
        values["last validation"] = {key: value for key, value in record.items() if key != "split"}
    return [identities, ("last validation", said)], values


def _identities(path: Path) -> tuple[list[str] | None, Row, dict[str, int]]:
    """(the held-out names, or None where split.json says none; its row; its counts for --json)."""
    from lowdim_sd.hypertrain_io import read_split

    if not path.exists():
        return None, ("identities", f"unknown: no {SPLIT} here"), {}
    if not path.is_file():  # a FIFO's read would wait
        return None, ("identities", f"unknown: {SPLIT} is not a file"), {}
    try:
        split = read_split(path)
    except LowdimError:
        return None, ("identities", f"unknown: {SPLIT} is damaged"), {}
    train, val = len(split["train"]), len(split["val"])
    # train-hypernet's own end line: "N training and M held-out identities"
    return split["val"], ("identities", f"{train} training and {val} held out"), {"training": train, "held out": val}


def _last_validation(path: Path, steps: int, held_out: list[str] | None) -> tuple[str, dict | None]:
    """(the row's words, the record they are of, or None where none is shown): the line the run printed at its
    last validation, if that is of this network's step and on split.json's held-out identities."""
    from lowdim_sd.file_info_parts import part
    from lowdim_sd.hypertrain_io import last_validation, validation_line

    if not path.exists():
        return f"unknown: no {METRICS} here", None
    if not path.is_file():  # a FIFO's read would wait
        return f"unknown: {METRICS} is not a file", None
    try:
        record = last_validation(path)
    except OSError:
        return f"unknown: {METRICS} cannot be read", None
    if record is None:
        return f"unknown: {METRICS} holds no validation", None
    step = record.get("step")
    if step != steps:  # of a later run continued in this folder, or a network copied in from another step
        return f"not shown: {METRICS}'s last is of step {part(str(step))}, this network's step {steps}", None
    try:
        said = validation_line(steps, record)
        others = held_out is not None and sorted(map(str, record["identities"])) != sorted(held_out)
    except (TypeError, ValueError, KeyError):  # a record edited by hand
        return f"unknown: {METRICS}'s validation of step {steps} is damaged", None
    if others:
        return f"not shown: {METRICS}'s last validation held out other identities than {SPLIT}", None
    return said, record


def held_out_picture(file: Path, weights: object) -> Path | None:
    """A picture of an identity the run of ``file`` (its --out's network) held out, per its split.json, on disk where
    the index of its weight folder says: a face the network never trained on, personalize's honest first try. The
    weight folder is found by the name the file records (``weights``; with several, a held-out name says its folder),
    beside the run's --out or in the current folder. None where any of that is not there."""
    from lowdim_sd.hypertrain_io import read_split

    split = file.parent / SPLIT
    if file.name != HYPERNET_FILE or not isinstance(weights, str) or not split.is_file():
        return None
    try:
        held_out = read_split(split)["val"]
    except LowdimError:
        return None
    names = weights.split(", ")  # as hypernet_records.run_metadata joins them
    beside = Path(os.path.abspath(file)).parent.parent  # the folder holding the run's --out
    for identity in held_out[:20]:  # a stranger's split may list thousands: a few tries are enough
        folder, _, name = identity.partition("/") if len(names) > 1 else (names[0], "", identity)
        if not is_plain_name(folder):  # a name alone, as the file records it
            continue
        for place in (beside / folder, Path(folder)):
            picture = _first_picture(place, name) if is_weight_folder(place) else None
            if picture is not None:
                return picture
    return None


def _first_picture(folder: Path, identity: str) -> Path | None:
    """The first picture of ``identity`` as the weight folder's index records it, if it is on disk."""
    from lowdim_sd.weight_shards import image_inside_root

    try:
        index = weight_index.read_index(folder)
    except (LowdimError, OSError):
        return None
    entry: dict = next((entry for entry in index["identities"] if entry.get("name") == identity), {})
    images = entry.get("images")
    if not isinstance(images, list) or not images or not isinstance(images[0], str) or \
            not image_inside_root(images[0]) or not isinstance(index.get("root"), str):
        return None
    picture = Path(index["root"]) / images[0]
    return picture if picture.is_file() else None
