"""The batch a precompute trains now, kept when it stops: a Ctrl-C (or running out of memory) loses no step of it.

Each process trains its batch in a hidden folder of --out (``.batch-in-flight``; ``.batch-in-flight-pR`` for process
R of several), as ``lowdim train`` trains into its --out: a stop writes a checkpoint of the steps done there, beside
``batch.json`` (the batch's identities and the index header it trains under). A rerun whose first batch is that
batch, trained the same way, resumes it from that step, its rows byte for byte an uninterrupted run's: the same
identities in the same order, and the header's settings alike, then train's own resume check (each identity's
pictures and seed, the base model's weights, the training settings). Any other leftover is discarded with one line
saying why, and the batch trains from step 0. Once the batch is kept (its shard, then the index), the folder goes.
A batch that diverged keeps its last good state there too, and its record says so: a rerun that would resume it (the
same batch, trained alike) would go non-finite at the same step again, so it refuses, saying what would help.

Nothing else reads the folder: shards and index parts are found at the top of --out only, and train writes no
adapter file into it (the rows go to a shard; an identity's name may be too long for a file name anyway).
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.option_words import either, option
from lowdim_sd import checkpoints
from lowdim_sd.divergence import Divergence, TrainingDiverged
from lowdim_sd.precompute_header import precompute_differences
from lowdim_sd.resume_words import listed
from lowdim_sd.train import inputs_of, run_settings, with_defaults
from lowdim_sd.weight_index import INDEX, differing_settings, write_json

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from lowdim_sd.loading import SDModel
    from lowdim_sd.modes import AdapterTrainable
    from lowdim_sd.train import Subject, TrainConfig

FOLDER = ".batch-in-flight"
RECORD = "batch.json"
_FOLDER_NAME = re.compile(rf"^{re.escape(FOLDER)}(?:-p\d+)?$")


def batch_folder(out: Path, rank: int, processes: int) -> Path:
    """Where this process trains its batch (one folder per process: each resumes its own)."""
    return Path(out) / (FOLDER if processes == 1 else f"{FOLDER}-p{rank}")


def remove(folder: Path) -> None:
    if folder.is_symlink() or folder.is_file():  # not one precompute made: its name is precompute's
        folder.unlink()
    shutil.rmtree(folder, ignore_errors=True)


def shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@dataclass
class Kept:
    """A stopped batch's checkpoint: its identities, the step it holds and the run's steps."""

    folder: Path
    names: list[str]
    step: int
    steps: int

    @property
    def words(self) -> str:
        return f"{self.step} of {self.steps} steps of the batch in flight ({shown(self.names)}) in {self.folder}"


def kept_in(folder: Path, steps: int, done: Collection[str] = ()) -> Kept | None:
    """What ``folder`` holds of a stopped batch: None without a readable record and checkpoint, or when its identities
    are all ``done`` (kept in the index: a stop came while the folder was being removed)."""
    try:
        names = _record(folder)["identities"]
        latest = checkpoints.latest(folder)
        step = checkpoints.saved_step(latest) if latest is not None else None
    except (LowdimError, OSError, ValueError):  # ValueError: not JSON, or not UTF-8
        return None
    if not step or set(names) <= set(done):  # step 0: nothing trained to keep
        return None
    return Kept(folder, names, step, steps)


def launched() -> tuple[int, int]:
    """This process's rank and the run's number of processes, as a launcher (torchrun, accelerate launch) gives
    them to every process, and accelerate's PartialState reads them; alone, process 0 of 1."""
    rank, processes = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    return (int(rank), int(processes)) if rank.isdigit() and processes.isdigit() else (0, 1)


def other_processes(folder: Path, processes: int) -> str | None:
    """'the run before had P processes, this one Q' where the folder's record says its run had another number of
    processes (its batches were other shares of the identities: the first reason a rerun discards it); None where
    the numbers agree, or the record is unreadable or older than the field."""
    try:
        before = _record(folder).get("processes")
    except (LowdimError, OSError, ValueError):
        return None
    if type(before) is not int or before < 1 or before == processes:
        return None
    return f"the run before had {_processes(before)}, this one {processes}"


def _processes(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"


def sweep_other_runs(out: Path, rank: int, processes: int) -> None:
    """The main process removes the batch folders no process of this run owns (left by a run under another number
    of processes, whose batches were other shares of the identities), saying so."""
    if rank != 0:
        return
    ours = {batch_folder(out, number, processes).name for number in range(processes)}
    for folder in sorted(path for path in Path(out).iterdir() if _FOLDER_NAME.match(path.name) and path.is_dir()
                         and path.name not in ours):
        kept = kept_in(folder, 0)
        if kept is not None:
            why = other_processes(folder, processes) or "it was a run under another number of processes"
            warnings.warn(f"{folder}: discarded the stopped batch ({shown(kept.names)}, at step {kept.step}): "
                          f"{why}", stacklevel=3)
        remove(folder)


def leave_no_batch(folder: Path, done: set[str], processes: int | None = None) -> None:
    """After a run's last batch: a folder still there held a batch this run had none of to train (its identities
    past --limit now, or gone, or trained by another process of a run under another number of ``processes``:
    the launcher's, where not given), discarded with a line unless it was kept already."""
    if not folder.exists():
        return
    kept = kept_in(folder, 0, done)
    if kept is not None:
        why = other_processes(folder, launched()[1] if processes is None else processes)
        warnings.warn(f"{folder}: discarded the stopped batch ({shown(kept.names)}, at step {kept.step}): "
                      f"{why or 'this run has none of its identities to train'}", stacklevel=3)
    remove(folder)


@dataclass
class InFlight:
    """This process's batch folder in a run: whether the batch about to train resumes what it holds."""

    folder: Path
    header: dict  # the index header this run trains under
    done: set[str]  # identities the index holds
    say: Callable[[str], None]
    first: bool = True  # only a run's first batch may be the one a stop left
    rank: int | None = None  # this process's, and the run's number of processes: the launcher's, where not given
    processes: int | None = None

    def __post_init__(self) -> None:
        rank, processes = launched()
        self.rank = rank if self.rank is None else self.rank
        self.processes = processes if self.processes is None else self.processes

    def resumes(self, model: SDModel, subjects: list[Subject], trainable: AdapterTrainable,
                config: TrainConfig) -> bool:
        """Whether the batch of ``trainable``'s subjects resumes the folder's checkpoint; if not, the folder is made
        ready for it: a leftover discarded, saying why, and the batch's record written."""
        first, self.first = self.first, False
        names = list(trainable.subject_names)
        kept = kept_in(self.folder, self.header["config"]["steps"], self.done) if first else None
        if kept is not None:  # train's own resume settings, as it compares them (pictures, seeds, model, recipe)
            why = self._why_not(kept, names, lambda: {**run_settings(with_defaults(config), trainable),
                                                      "inputs": inputs_of(model, subjects, trainable)})
            if why is None and (diverged := divergence_in(self.folder)) is not None:
                raise TrainingDiverged(diverged_again(self.folder, names, diverged))
            if why is None:
                self.say(f"resuming the stopped batch ({shown(names)}) at step {kept.step} of {kept.steps} from "
                         f"{self.folder}")
                self._write_record(names)  # now this run's: a later stop's rerun compares its processes with this run's
                return True
            warnings.warn(f"{self.folder}: discarded the stopped batch ({shown(kept.names)}, at step {kept.step}): "
                          f"{why}; training the batch from step 0", stacklevel=4)
        remove(self.folder)
        self.folder.mkdir(parents=True)
        self._write_record(names)
        return False

    def _write_record(self, names: list[str]) -> None:
        write_json(self.folder / RECORD, {"identities": names, "header": self.header, "rank": self.rank,
                                          "processes": self.processes})

    def _why_not(self, kept: Kept, names: list[str], settings: Callable[[], dict]) -> str | None:
        """Why the kept batch is not the batch of ``names`` trained as this run trains it (None: it is). Under
        another number of processes it may still be (the same identities, trained alike: a share can repeat)."""
        if kept.names != names:
            return other_processes(self.folder, self.processes or 1) or (
                f"this run's first batch is {shown(names)} (another {option('batch_subjects', 'PrecomputeJob')}, "
                f"or other identities to train)")
        stored = _record(self.folder)["header"]
        different = _header_differences(stored, self.header)
        try:
            different = different or checkpoints.differences_between(_stored_settings(self.folder), settings())
        except LowdimError as error:
            return str(error)
        return f"it was trained otherwise: {listed(different)}" if different else None

    def kept(self, done: Collection[str]) -> Kept | None:
        """What a stop now leaves of the batch in flight (None: nothing, or a batch the index holds: ``done``)."""
        return kept_in(self.folder, self.header["config"]["steps"], done)


def note_divergence(folder: Path, divergence: Divergence) -> None:
    """Record in the batch's record that its training diverged: its checkpoint is the last good state."""
    try:
        record = _record(folder)
    except (LowdimError, OSError, ValueError):  # no record of this batch: nothing a rerun would resume
        return
    write_json(folder / RECORD, {**record, "diverged": {"step": divergence.step, "what": divergence.what,
                                                        "advice": divergence.advice}})


def divergence_in(folder: Path) -> Divergence | None:
    """The divergence the batch's record notes (``note_divergence``); None where it notes none, or is unreadable."""
    try:
        noted = _record(folder).get("diverged")
    except (LowdimError, OSError, ValueError):
        return None
    if not isinstance(noted, dict) or type(noted.get("step")) is not int \
            or not all(isinstance(noted.get(key), str) for key in ("what", "advice")):
        return None
    return Divergence(noted["step"], noted["what"], noted["advice"])


def diverged_again(folder: Path, names: list[str], diverged: Divergence) -> str:
    """Why a rerun does not resume a batch that diverged: trained alike, it would diverge at the same step again."""
    return (f"{folder}: its batch ({shown(names)}) diverged at step {diverged.step} ({diverged.what}) with these same "
            f"settings, and resumed it would diverge there again: {what_helps(folder, diverged)} (removing {folder} "
            f"discards it)")


def what_helps(folder: Path, diverged: Divergence) -> str:
    """The divergence's advice; under an index, with another --out: the index keeps its identities' settings (a
    rerun into it with another rate is refused before the model loads)."""
    out = folder.parent
    if not (out / INDEX).is_file() and not any(out.glob("index-p*.json")):
        return diverged.advice  # other settings discard the batch and train it from step 0
    return (f"{diverged.advice} with another {either('--out', 'out')} ({out} keeps the settings its identities were "
            f"trained with)")


def _record(folder: Path) -> dict:
    """The batch's record, as ``InFlight.resumes`` wrote it (anything else is no batch to resume)."""
    record = json_text.loads((folder / RECORD).read_text())
    names = record.get("identities") if isinstance(record, dict) else None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names) \
            or not isinstance(record.get("header"), dict) or not isinstance(record["header"].get("config"), dict):
        raise LowdimError(f"{folder / RECORD}: not a batch record")
    return record


def _stored_settings(folder: Path) -> dict:
    from lowdim_sd.checkpoint_reading import read_state

    latest = checkpoints.latest(folder)
    return (read_state(latest).get("settings") or {}) if latest is not None else {}


def _header_differences(stored: dict, header: dict) -> list[str]:
    """The index header's settings the kept batch trained under otherwise, in precompute's words (a setting the
    training config repeats, the seed, said once)."""
    different = differing_settings(stored, header)
    different = [(key, there, now) for key, there, now in different
                 if not (key.startswith("config.") and (key.removeprefix("config."), there, now) in different)]
    lines = [line for key, _, _ in different for line in precompute_differences(key, stored, header)]
    return list(dict.fromkeys(lines)) or [key for key, _, _ in different]


class BatchTrainable:
    """The batch's adapters as ``train`` sees them, but writing no adapter file when it ends: precompute keeps them
    as rows of a shard (and an identity's name, up to 512 characters, may make no file name)."""

    def __init__(self, trainable: AdapterTrainable) -> None:
        self.trainable = trainable
        self.parameters = trainable.parameters
        self.num_subjects = trainable.num_subjects

    def state(self) -> dict[str, torch.Tensor]:
        return self.trainable.state()

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.trainable.load_state(tensors)

    def save(self, out_dir: Path) -> list[Path]:
        return []

    def note_divergence(self, out_dir: Path, divergence: Divergence) -> None:
        """``divergence._note_in_its_folder``: a rerun of this batch, trained alike, would diverge again."""
        note_divergence(out_dir, divergence)

    def __getattr__(self, name: str) -> Any:  # the rest train asks of an adapter (signature, subject_names)
        return getattr(self.trainable, name)


# ----------------------------------------------------------------------------------------- the run's lines


def batch_line(start: int, size: int, per_batch: int, pending: int, skipped: int, elapsed: float) -> str:
    """Where a batch stands in the whole run (each batch draws its own bar of steps), with the time the
    rest should take at the pace of the batches so far: a phase 0 of thousands of identities runs for hours."""
    which = f"{start + 1}-{start + size}" if size > 1 else f"{start + 1}"
    before = f", {skipped} done before" if skipped else ""
    left = f", about {duration(elapsed / start * (pending - start))} left" if start else ""
    batches = -(-pending // per_batch)
    noun = "identities" if size > 1 else "identity"
    return f"batch {start // per_batch + 1} of {batches}: {noun} {which} of {pending}{before}{left}"


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{max(1, round(seconds))} s"
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"
