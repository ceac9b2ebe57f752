"""``lowdim show`` of what a precompute stopped before its end leaves (``lowdim_sd.precompute_batches``): its --out
holding a batch in flight (``.batch-in-flight``; ``.batch-in-flight-pR`` for process R of several), index parts not
merged yet (``index-pR.json``) or an index of fewer identities than its run was asked for (stopped between two
batches), and such a batch folder itself, or a checkpoint in it. Those are precompute's alone: a
rerun of the same precompute command resumes them, and no other command reads them (``lowdim train --resume`` on a
batch folder would train a run of its own there). The precompute command is not recorded in full (its --steps,
--batch-subjects, its launcher), so the use line is that command with ``...`` for its own options."""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path
from shlex import quote

from lowdim import json_text
from lowdim.option_words import counted
from lowdim.paths import named
from lowdim_sd.file_info_parts import FileInfo, command_word, listing, part
from lowdim_sd.weight_folder_info import index_rows

FOLDER, RECORD = ".batch-in-flight", "batch.json"  # precompute_batches' names (that module imports the trainer)
ASKED = "identities_asked"  # precompute_resume.ASKED: the identities a one-process run was asked for
BATCH_NAME = re.compile(rf"^{re.escape(FOLDER)}(?:-p(?P<rank>\d+))?$")
RERUN = ("rerun the same precompute command (its options are not recorded in full: the same --steps, "
         "--batch-subjects and launcher)")
# What a checkpoint inside a batch folder shows: precompute's, which its rerun resumes, not a train run's.
CHECKPOINT_TYPES = ("checkpoint", "checkpoints_folder", "trained_state", "optimizer_state")


def batch_folders(out: Path) -> list[Path]:
    """Precompute's batch folders in ``out``, by name (none where it cannot be listed)."""
    try:
        return sorted(path for path in out.iterdir()
                      if BATCH_NAME.match(path.name) and path.is_dir() and not path.is_symlink())
    except OSError:
        return []


def is_batch_folder(folder: Path) -> bool:
    """Whether ``folder`` is precompute's batch folder: its name and its record (``batch.json``)."""
    return BATCH_NAME.match(named(folder).name) is not None and (folder / RECORD).is_file()


def _record(folder: Path) -> dict:
    """The batch's record (its identities, the index header it trains under); {} where it is not readable."""
    try:
        record = json_text.loads((folder / RECORD).read_text())
    except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
        return {}
    return record if isinstance(record, dict) else {}


def _header(record: dict) -> dict:
    header = record.get("header")
    return header if isinstance(header, dict) and isinstance(header.get("config"), dict) else {}


def _batch(folder: Path, done: Collection[str]) -> tuple[str, dict[str, object]]:
    """What the batch folder keeps, in a row's words and as --json's object: its identities and the steps its
    checkpoint holds (what a rerun resumes, as ``precompute_batches.kept_in`` finds it)."""
    from lowdim_sd.precompute_batches import divergence_in, kept_in, what_helps

    record = _record(folder)
    listed = record.get("identities")
    names = [str(name) for name in listed] if isinstance(listed, list) else []
    steps = _header(record).get("config", {}).get("steps")
    kept = kept_in(folder, steps if isinstance(steps, int) else 0, done)
    value = {"folder": str(folder), "identities": names, "step": kept.step if kept else 0, "steps": steps}
    who = f"{folder.name}: " + (f"{listing([part(name) for name in names], 3)}, " if names else "")
    if kept is not None and (diverged := divergence_in(folder)) is not None:  # refused: precompute_batches
        value["diverged"] = {"step": diverged.step, "what": diverged.what, "advice": diverged.advice}
        return (f"{who}diverged at step {diverged.step} ({part(diverged.what)}), its last good state (step "
                f"{kept.step}) kept: the rerun with the same settings refuses it, since it would diverge there "
                f"again; {part(what_helps(named(folder), diverged))}"), value
    if kept is not None:
        checkpoint = f"step-{kept.step:06d}"
        return f"{who}{kept.step} of {steps} steps kept (its checkpoint {checkpoint}): the rerun resumes them", value
    if not record:
        return f"{folder.name}: no readable {RECORD}, so nothing to resume: the rerun trains its batch anew", value
    if names and set(names) <= set(done):
        return f"{who}kept in the index already (a stop came as the folder was removed): the rerun removes it", value
    return f"{who}no step kept: the rerun trains the batch from step 0", value


def _batches_row(batches: list[Path], done: Collection[str]) -> tuple[tuple[str, str], list[dict[str, object]]]:
    said = [_batch(folder, done) for folder in batches]
    return ("batches in flight", "; ".join(text for text, _ in said)), [value for _, value in said]


def rerun_line(out: Path, header: dict) -> str:
    """The precompute command that continues ``out``, with ``...`` for the options it does not record."""
    model = command_word(str(header.get("model") or ""), "MODEL")
    root = command_word(str(header.get("root") or ""), "IDENTITIES")
    return f"lowdim precompute -m {model} -i {root} -o {quote(str(out))} ..."


def stopped_before_first_batch(out: Path) -> FileInfo:
    """A precompute's --out holding batch folders and no index: it stopped before its first batch was kept."""
    batches = batch_folders(out)
    header = next((found for folder in batches if (found := _header(_record(folder)))), {})
    rows, values = index_rows({**header, "identities": []}) if header else ([], {})
    rows = [(name, "none kept yet" if name == "identities" else text) for name, text in rows]
    batch_row, batch_values = _batches_row(batches, ())
    from lowdim_sd.precompute_batches import divergence_in

    but = ", but for one that diverged (below)" if any(divergence_in(folder) for folder in batches) else ""
    said = (f"a precompute stopped before its first batch was kept: no identity is kept yet, and "
            f"{counted(len(batches), 'batch folder')} {'holds' if len(batches) == 1 else 'hold'} its steps; {RERUN} to "
            f"continue: it "
            f"resumes each batch from its checkpoint{but}")
    return FileInfo(out, "a lowdim precompute run stopped before its first batch was kept",
                    [("unfinished", said), batch_row, *rows], rerun_line(out, header),
                    {**values, "identities": {"count": 0, "shards": 0}, "batches in flight": batch_values},
                    type="stopped_precompute")


def stopped_precompute(info: FileInfo, index: dict) -> FileInfo:
    """``info`` of a weight folder, said to be a precompute stopped before its end where it is one: its index parts
    not merged into index.json (the main process merges them at the end), a batch in flight kept, or fewer identities
    kept than its run was asked for (a stop between two batches); else as it is.
    train-hypernet would train on the identities kept so far alone, so its use line is the rerun instead."""
    folder = info.path
    parts, batches = sorted(folder.glob("index-p*.json")), batch_folders(folder)
    count, asked = len(index["identities"]), index.get(ASKED)
    short = type(asked) is int and asked > count  # stopped between two batches: no batch folder left
    if not parts and not batches and not short:
        return info
    where = (f" in the index parts of {len(parts)} process{'es' * (len(parts) > 1)} (index-p*.json), not merged into "
             f"index.json yet" if parts else "")
    of = f" (of the {asked:,} its run was asked for)" if short and not parts else ""
    said = (f"a precompute stopped before its end: {count:,} identit{'ies' if count != 1 else 'y'} kept{of}{where}; "
            f"{RERUN} to finish it (train-hypernet now would train on those alone)")
    rows = [("unfinished", said)]
    values = dict(info.values)
    if batches:
        done = {str(entry.get("name")) for entry in index["identities"]}
        batch_row, values["batches in flight"] = _batches_row(batches, done)
        rows.append(batch_row)
    return FileInfo(folder, f"a lowdim weight folder of a precompute stopped before its end ({count:,} identities "
                            f"kept)", [*rows, *info.rows], rerun_line(folder, index), values,
                    type="stopped_precompute")


def batch_folder_info(folder: Path) -> FileInfo:
    """A batch folder itself: precompute's batch in flight of its --out, which the rerun resumes."""
    out = named(folder).parent
    header = _header(_record(folder))
    text, value = _batch(folder, ())
    said = (f"precompute's batch in flight of {part(str(out))}: {RERUN} with -o {part(str(out))} to resume it; no "
            f"other command reads this folder (`lowdim train --resume` on it would train a run of its own here)")
    return FileInfo(folder, f"the batch in flight of a stopped precompute of {part(str(out))}",
                    [("unfinished", said), ("batch", text)], rerun_line(out, header), {"batch": value},
                    type="stopped_precompute")


def in_batch_folder(info: FileInfo) -> FileInfo:
    """``info`` of a checkpoint (a step folder, a file in one, a checkpoints folder) said as precompute's where it
    is in a batch folder: its resume is the precompute command again, not ``lowdim train ... --resume``."""
    if info.type not in CHECKPOINT_TYPES:
        return info
    batch = next((folder for folder in Path(os.path.abspath(info.path)).parents[:3] if is_batch_folder(folder)), None)
    if batch is None:
        return info
    resumed = ("the same precompute command again, not `lowdim train --resume`: it resumes the batch in flight from "
               "its newest checkpoint")
    # no "run" row: train writes no adapter file there (precompute keeps the batch's rows in a shard)
    rows = [(name, resumed if name == "resumed by" else text) for name, text in info.rows if name != "run"]
    values = {name: value for name, value in info.values.items() if name != "run"}
    out = batch.parent  # absolute: the line runs from any folder
    return FileInfo(info.path, f"{info.kind}, of precompute's batch in flight in {part(str(out))}", rows,
                    rerun_line(out, _header(_record(batch))), values, type=info.type)
