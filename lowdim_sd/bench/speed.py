"""``lowdim bench speed``: seconds of every step from one photo to a personalized SD1.5, side by side.

One prepared run: the settings are checked, the random-weight model is built and saved once, then
each task measures and stores its results in OUT/measurements/ at once, so an interrupted run
resumes where it stopped (a rerun skips what is stored). At the end OUT/speed.json and OUT/table.md
hold the whole table. See docs/benchmarks.md.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from lowdim.errors import LowdimError
from lowdim.files import atomic_write
from lowdim_sd import runs
from lowdim_sd.bench import speed_adapters as adapters
from lowdim_sd.bench import speed_measures as measures
from lowdim_sd.bench.speed_report import build_report, labels, markdown
from lowdim_sd.bench.speed_setup import (
    SCALES,
    Scale,
    Settings,
    contradicting_flags,
    machine,
    machine_changes,
    photo_path,
    readable_photo,
    resolve_settings,
    saved_model,
)
from lowdim_sd.bench.speed_stored import read_measurement, read_settings
from lowdim_sd.bench.speed_timing import skipped

SETTINGS_FILE = "settings.json"
MEASUREMENTS = "measurements"
REPORT_FILES = ("speed.json", "table.md")


@dataclass(frozen=True)
class SpeedJob:
    """What was asked, one field per CLI option."""

    out: Path
    quick: bool = False
    device: str = "auto"
    dtype: str = "auto"
    resolution: int | None = None
    repeats: int | None = None
    photo: Path | None = None
    model_dir: Path | None = None  # where the random model is saved (default OUT/model)
    overwrite: bool = False
    only: tuple[str, ...] = ()  # task names; empty: all
    run: bool = True  # False: only tabulate what OUT already holds


@dataclass(frozen=True)
class Task:
    """One unit of work: measures ``keys`` together (variants timed side by side belong to one task)."""

    name: str
    keys: tuple[str, ...]
    run: Callable[[measures.SpeedContext], dict]


def tasks(scale: Scale) -> list[Task]:
    """In run order. Full DreamBooth comes late: it trains (and so spoils) the model's own weights."""
    steps = [f"step_{who}_r{rank}" for rank in (1, 4) for who in ("lowdim", "peft")]
    return [
        Task("load", ("load",), measures.measure_load),
        Task("crop", ("crop",), measures.measure_crop),
        Task("hypernet", ("hyper_k1", "hyper_k4"), measures.measure_hypernet),
        Task("merge", ("merge",), measures.measure_merge),
        Task("finetune", ("finetune", "warmup"), measures.measure_finetune),
        Task("memory", ("memory", "memory_gc"), measures.measure_memory),
        Task("generate", ("generate",), measures.measure_generate),
        Task("lora-db", ("lora_db",), measures.measure_lora_dreambooth),
        Task("adapter-step", ("step_lora_r1", "step_lidb"), adapters.measure_adapter_step),
        Task("adapter-infer", ("infer_none", "infer_lidb_unmerged", "infer_lidb_merged"),
             adapters.measure_adapter_inference),
        Task("peft-step", tuple(steps), partial(adapters.measure_peer, train=True)),
        Task("peft-infer", tuple(key.replace("step_", "infer_") for key in steps),
             partial(adapters.measure_peer, train=False)),
        *[Task(f"precompute-k{k}", (f"batched_k{k}",), partial(measures.measure_batched, subjects=k))
          for k in scale.subjects],
        Task("full-db", ("full_db",), measures.measure_full_dreambooth),
        # After everything else: a capture that fails badly could leave the GPU unusable for what follows.
        # Full DreamBooth dropped its trained model, so this one loads a fresh one.
        Task("finetune-graphs", ("finetune_graphs",), measures.measure_finetune_graphs),
    ]


def chosen_tasks(scale: Scale, only: tuple[str, ...]) -> list[Task]:
    """The tasks ``--only`` names (all without it), in run order; an unknown name is one line."""
    plan = tasks(scale)
    unknown = [name for name in only if name not in {task.name for task in plan}]
    if unknown:
        raise LowdimError(f"--only: unknown task '{unknown[0]}'; choose from {', '.join(t.name for t in plan)}")
    return [task for task in plan if not only or task.name in only]


class Store:
    """OUT/settings.json (the settings and the machine of the measurements) and one JSON file per measurement,
    each written atomically."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.folder = self.out / MEASUREMENTS

    def claim(self, settings: Settings, overwrite: bool, here: dict | None = None) -> None:
        """Make OUT this run's; results measured under other settings, or on another machine than ``here``
        (default: this one), are refused (or, with overwrite, dropped with the table made of them). Results of
        these settings on this machine are kept either way: the rerun resumes. The first run records its machine."""
        if self.out.exists() and not self.out.is_dir():
            raise LowdimError(f"--out {self.out}: is a file; give a folder")
        here = here or machine(settings.device)
        try:
            why = self._mismatch(settings, here)
        except LowdimError as damaged:  # a damaged settings.json: nothing says what its rows were measured with
            if not overwrite:  # said here, not in its reader: --no-run reads it too, and refuses --overwrite
                raise LowdimError(f"{damaged}, or --overwrite to drop them") from None
            why = "damaged"
        if why and not overwrite:
            self._refuse(why)
        recorded = None if why else self.stored_machine()
        if why:
            self.drop()
        # A folder from before machines were recorded adopts this one: nothing says what measured it.
        _write_json(self.out / SETTINGS_FILE, {**settings.to_dict(), "machine": recorded or here})

    def _mismatch(self, settings: Settings, here: dict) -> str | None:
        """Why OUT's stored results are not this run's (other settings, another machine), None when they are."""
        stored = self.stored_settings()
        if stored is not None and stored != settings.to_dict():
            changed = ", ".join(f"{key} {stored.get(key)} -> {value}" for key, value in settings.to_dict().items()
                                if stored.get(key) != value)
            return f"made with other settings ({changed})"
        recorded = self.stored_machine()
        if recorded is not None and machine_changes(recorded, here):
            return f"made on another machine ({machine_changes(recorded, here)})"
        return None

    def drop(self) -> None:
        """Remove the measurements and the report made of them: a table left beside other settings would pass
        for this run's."""
        if self.folder.is_dir():
            shutil.rmtree(self.folder)
        self.drop_report()

    def drop_report(self) -> None:
        for name in REPORT_FILES:
            (self.out / name).unlink(missing_ok=True)

    def _refuse(self, why: str) -> None:
        # Each way out must work as said: --overwrite is refused beside --no-run, so they are two.
        raise LowdimError(f"{self.out} holds measurements {why}; pass another --out, or --overwrite to drop "
                          f"them; --no-run alone tabulates them")

    def stored_settings(self) -> dict | None:
        """OUT/settings.json's settings, None when there is none; a damaged one is one line naming it."""
        stored = self._settings_file()
        return None if stored is None else {key: stored[key] for key in Settings.__dataclass_fields__}

    def stored_machine(self) -> dict | None:
        """The machine OUT's measurements were made on, None where it was not recorded (or nothing was)."""
        stored = self._settings_file()
        return None if stored is None else stored.get("machine")

    def _settings_file(self) -> dict | None:
        return read_settings(self.out / SETTINGS_FILE, self.out)

    def done(self, keys: tuple[str, ...], retry_skipped: bool = False) -> bool:
        """Whether every one of ``keys`` is stored; with ``retry_skipped``, one stored as skipped is not."""
        found = self.load(list(keys))
        return len(found) == len(keys) and not (retry_skipped and any(e.get("skipped") for e in found.values()))

    def save(self, key: str, entry: dict) -> None:
        _write_json(self.folder / f"{key}.json", entry)

    def load(self, keys: list[str]) -> dict[str, dict]:
        """The stored measurements of ``keys``, each checked (a damaged one is one line naming its file)."""
        found = {}
        for key in keys:
            path = self.folder / f"{key}.json"
            if path.is_file():
                found[key] = read_measurement(path)
        return found


def _write_json(path: Path, payload: dict) -> None:
    text = json.dumps(payload, indent=1, allow_nan=False) + "\n"  # JSON proper: no bare NaN or Infinity
    atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def run_speed(job: SpeedJob, progress: bool = True, console: Any = None) -> dict:
    """Measure what is not yet stored in ``job.out``, then write and return the whole report."""
    if not job.run and job.overwrite:  # it would drop what --out holds, then tabulate nothing
        raise LowdimError("--overwrite and --no-run together would drop the measurements and measure none; "
                          "pass one of them")
    store = Store(job.out)
    settings = (resolve_settings(job.quick, job.device, job.dtype, job.resolution, job.repeats) if job.run
                else tabulated_settings(job, store))
    scale = SCALES[settings.scale]
    chosen = chosen_tasks(scale, job.only)  # an unknown --only is one line even when only tabulating
    if job.photo is not None:
        readable_photo(Path(job.photo))
    keys = [key for task in tasks(scale) for key in task.keys]
    if job.run:
        store.claim(settings, job.overwrite)
        store.load(keys)  # a damaged file is refused now, not by the table after minutes of measuring
        # A skipped row (no face detector, out of memory) is retried when --only names its task; a plain rerun
        # keeps it, so a rerun after a timeout does not spend its minutes running out of memory again.
        pending = [task for task in chosen if not store.done(task.keys, retry_skipped=task.name in job.only)]
        if pending:
            try:
                measure(pending, settings, scale, job, store, progress, console)
            except KeyboardInterrupt:  # Ctrl-C keeps what is done: the table too, as --no-run would write it
                if store.load(keys):
                    write_report(settings, scale, store, keys)
                else:  # an empty table would pass for a benchmark, and an earlier one for this run's
                    store.drop_report()
                raise
    elif not store.load(keys):  # an empty table would pass for a benchmark; a mistyped --out is likelier
        raise LowdimError(f"{job.out}: no results to tabulate (run without --no-run first)")
    return write_report(settings, scale, store, keys)


def write_report(settings: Settings, scale: Scale, store: Store, keys: list[str]) -> dict:
    """OUT/speed.json and OUT/table.md of what is stored in OUT."""
    report = build_report(settings, scale, store.load(keys), store.stored_machine())
    _write_json(store.out / "speed.json", report)
    atomic_write(store.out / "table.md", lambda temp: Path(temp).write_text(markdown(report, scale),
                                                                            encoding="utf-8"))
    return report


def tabulated_settings(job: SpeedJob, store: Store) -> Settings:
    """--no-run: the settings OUT was measured with, as ``bench quality --no-run`` takes its results'; asking
    them again would refuse the table of a --quick run to anyone who left --quick out. A flag typed beside
    --no-run that says otherwise is one line: silently tabulating other settings than asked would mislead."""
    stored = store.stored_settings()
    if stored is None:  # nothing recorded, so (almost surely) nothing to tabulate: said after this
        return resolve_settings(job.quick, job.device, job.dtype, job.resolution, job.repeats)
    settings = Settings(**stored)
    wrong = contradicting_flags(settings, job.quick, job.device, job.dtype, job.resolution, job.repeats)
    if wrong:
        measured = ", ".join(f"{key} {value}" for key, value in stored.items())
        them = "it" if len(wrong) == 1 else "them"
        raise LowdimError(f"--no-run tabulates {job.out} as it was measured ({measured}); {', '.join(wrong)} "
                          f"{'says' if len(wrong) == 1 else 'say'} otherwise: leave {them} out, or measure "
                          f"with {them} into another --out")
    return settings


def measure(pending: list[Task], settings: Settings, scale: Scale, job: SpeedJob, store: Store, progress: bool,
            console: Any) -> None:
    names = labels(scale)
    photo, note = photo_path(job.photo, job.out)
    model_dir = Path(job.model_dir or job.out / "model")
    with runs.progress(len(pending), "building the random model", enabled=progress, loss=False,
                       console=console) as advance:
        saved_model(model_dir, scale)
        torch.empty(0, device=settings.device)  # the device's context starts here, not inside the first timing
        context = measures.SpeedContext(settings, scale, model_dir, photo, note, names)
        for task in pending:
            advance(steps=0, label=task.name)
            try:
                entries = task.run(context)
            except torch.OutOfMemoryError:
                context.drop_model()
                entries = {key: skipped(names[key], f"out of memory on {settings.device}") for key in task.keys}
            except KeyboardInterrupt as stop:
                kept = sum(store.done((key,)) for key in names)
                runs.reraise(stop, f"interrupted during '{task.name}'; {kept} measurements are kept in "
                                   f"{store.folder}; {runs.RERUN} to measure the rest")
            for key, entry in entries.items():
                store.save(key, _stamped(entry, task))
            advance(label=task.name)


def _stamped(entry: dict, task: Task) -> dict:
    """The entry with the command that measured it, and for a skipped one the rerun that retries it."""
    retry = {"rerun": f"--only {task.name}"} if entry.get("skipped") and entry.get("retry", True) else {}
    return {**entry, **retry, "argv": sys.argv}
