"""``lowdim personalize``'s stages and the files it leaves in ``--out``.

Each stage is timed for the stage table. Once the adapter is written, a stop (Ctrl-C) keeps it and says how
to draw it or start over; and no file an earlier run left there (a preview, an export) may pass for the new
adapter's: the ones this run rewrites are removed as soon as the adapter is written, the others are pointed out.
A --full run's model left there is refused, as train's adapter run refuses it, and with --overwrite removed once
the adapter is written; another lowdim adapter there (a ``train --subjects`` run's NAME.safetensors) is named in a
warning as the run starts, and left as it is, as train leaves it.
"""

from __future__ import annotations

import contextlib
import shlex
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.option_words import either
from lowdim_sd import runs, status_line, stopping
from lowdim_sd.run_outputs import (
    ADAPTER,
    PREVIEW,
    export_path,
    full_run_model,
    refuse_earlier,
    remove_earlier,
    warn_adapters_left,
)

if TYPE_CHECKING:
    from lowdim_sd.personalize import PersonalizeJob, PersonalizeResult


# What a terminal's spinner says during the stages before the finetune's bar, which draw none of their own
# (``load_sd`` names the model's load itself).
WAITS = {"read image": "reading the face", "describe": "reading the face's looks",
         "hypernetwork": "predicting the adapter from the face", "initial adapter": "making the initial adapter"}


@contextmanager
def stage(result: PersonalizeResult, name: str, note: Callable[[], str] | None = None) -> Iterator[None]:
    """Time the stage; a Ctrl-C in it, from its announcement on, becomes ``Interrupted(note())`` (default: nothing
    was kept, as before the adapter is written)."""
    started = time.perf_counter()
    try:
        runs.report(name, 0, 1)  # inside: a stop its listener raises is this stage's, told as one a moment later
        with status_line.saying(WAITS[name]) if name in WAITS else contextlib.nullcontext():
            yield
    except KeyboardInterrupt as stop:
        if isinstance(stop, runs.Interrupted):  # the finetune's: says its own
            raise
        # Without a note the stage is before the adapter is written (loading, reading, predicting): nothing kept.
        told = note() if note else f"interrupted during '{name}'; nothing was kept; {runs.RERUN} to start over"
        raise runs.Interrupted(told) from stop
    finally:
        result.stages[name] = time.perf_counter() - started


def written_files(job: PersonalizeJob) -> list[Path]:
    """What a run writes to ``job.out``, the adapter first: an earlier run's copies are replaced only with
    --overwrite."""
    out = job.out
    return [out / ADAPTER, *(export_path(out / ADAPTER, fmt) for fmt in job.export),
            *([out / PREVIEW] if job.preview else [])]


def clear_earlier(job: PersonalizeJob) -> list[Path]:
    """Remove the earlier run's exports and preview once this run's adapter is written: they show another
    adapter, and a stop before they are rewritten (or a run that writes none) would leave them beside this one.
    Those this run rewrites exist only under --overwrite (without it the run was refused); the others (a preview
    under --no-preview, exports in formats not asked for) go only under --overwrite, which replaces the run."""
    rewritten = [path for path in written_files(job)[1:] if path.is_file()]
    earlier = [*rewritten, *(earlier_kept(job) if job.overwrite else [])]
    for path in earlier:
        path.unlink()
    return earlier


def refuse_other_runs(job: PersonalizeJob) -> None:
    """Without --overwrite, an earlier --full run's model in ``job.out`` refused in train's words; where this run's
    own files are there too, ``runs.refuse_overwrite`` names those instead."""
    if job.overwrite or any(path.exists() for path in written_files(job)):
        return
    refuse_earlier(full_run_model(job.out), "adapter")


def warn_other_adapters(job: PersonalizeJob) -> list[Path]:
    """Name the lowdim adapters other runs left in ``job.out`` (left as they are), as the run starts."""
    return warn_adapters_left(job.out, [job.out / ADAPTER], own="adapter")


def remove_other_runs(job: PersonalizeJob) -> list[Path]:
    """With --overwrite, once this run's adapter is written (a stop before it leaves the earlier run whole), remove
    an earlier --full run's model beside it, named in train's warning."""
    return remove_earlier(full_run_model(job.out)) if job.overwrite else []


def earlier_kept(job: PersonalizeJob) -> list[Path]:
    """What an earlier run left that this one does not rewrite: a preview under --no-preview, exports in
    formats not asked for this time."""
    from lowdim_sd.export import FORMATS

    out = job.out
    kept = [*(export_path(out / ADAPTER, fmt) for fmt in FORMATS if fmt not in job.export),
            *([] if job.preview else [out / PREVIEW])]
    return [path for path in kept if path.is_file()]


def warn_earlier(job: PersonalizeJob, cleared: Sequence[Path] = ()) -> None:
    if removed := not_rewritten(job, cleared):
        warnings.warn(f"removed the earlier run's {', '.join(map(str, removed))}, of another adapter "
                      f"({either('--overwrite', 'overwrite=True')} replaces the whole run)", stacklevel=3)
    for stale in earlier_kept(job):
        warnings.warn(f"{stale} is from an earlier run, not of this adapter", stacklevel=3)


def not_rewritten(job: PersonalizeJob, cleared: Sequence[Path]) -> list[Path]:
    """The earlier run's files ``clear_earlier`` removed that this run does not write again."""
    return [path for path in cleared if path not in written_files(job)]


@contextmanager
def after_the_adapter(result: PersonalizeResult, name: str, job: PersonalizeJob,
                      cleared: Sequence[Path] = ()) -> Iterator[None]:
    """A stage that runs once the adapter is written: Ctrl-C there keeps it and says, in one line, what is
    missing, how to draw the adapter, and how to start over with the command given. ``cleared``: the earlier
    run's files that ``clear_earlier`` removed."""
    with stage(result, name, lambda: stop_note(result, name, job, cleared)):
        stopping.check()  # a signal that waited out the finetune's last update stops here, the adapter kept
        yield


def take_up_a_held_stop(result: PersonalizeResult, job: PersonalizeJob, cleared: Sequence[Path]) -> None:
    """With no stage after the adapter (no --export, --no-preview), a Ctrl-C the script held over the final save
    stops here, the adapter kept, instead of a plain success (exit 0) for a stop the user asked for."""
    try:
        stopping.check()
    except KeyboardInterrupt as stop:
        raise runs.Interrupted(stop_note(result, "final save", job, cleared)) from stop


def stop_note(result: PersonalizeResult, name: str, job: PersonalizeJob, cleared: Sequence[Path]) -> str:
    missing = [path for path in written_files(job)[1:] if not path.is_file()]
    gone = [path for path in missing if path in cleared]
    note = f"; not written: {', '.join(map(str, missing))}" if missing else ""
    if gone:  # so nobody looks for the earlier ones, or wonders where they went
        copies = "copy was" if len(gone) == 1 else "copies were"
        note += f" (the earlier run's {copies} removed, being of another adapter)"
    if removed := not_rewritten(job, cleared):
        note += f"; the earlier run's {', '.join(map(str, removed))} removed, being of another adapter"
    stale = earlier_kept(job)  # the run ends here, before warn_earlier would name them
    if stale:
        note += f"; from an earlier run, not of this adapter: {', '.join(map(str, stale))}"
    # Without --overwrite a rerun would refuse the adapter just written; with it, the same command starts over.
    again = runs.RERUN if job.overwrite else either("add --overwrite to the same command",
                                                    "pass overwrite=True to the same call")
    return (f"interrupted during the {name}; the adapter is complete: {result.adapter}{note}; draw it with "
            f"`{draw_line(result, job)}`, or {again} to start over")


def draw_line(result: PersonalizeResult, job: PersonalizeJob) -> str:
    """How to draw the adapter, as its reader would type it: a ``lowdim generate`` line, or the Python calls."""
    configs = f" --model-config {shlex.quote(job.model_config)}" if job.model_config else ""  # a single file's, offline
    cli = (f"lowdim generate -m {shlex.quote(job.model)}{configs} -a {shlex.quote(str(result.adapter))} "
           f"-p {shlex.quote(result.subject_prompt())}")
    api = (f"generate(model, GenerateConfig(prompts=[{result.subject_prompt()!r}]), "
           f"attach_adapters(model, [{str(result.adapter)!r}]))")
    return either(cli, api)
