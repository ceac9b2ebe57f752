"""``lowdim show`` of a run's OUT folder and of its ``OUT/checkpoints``: a run stopped before its end (its newest
checkpoint and how it resumes), one killed before its first checkpoint was finished, and a finished one's checkpoints
left beside its outputs. Each checkpoint in them is read as ``checkpoint_file_info`` reads a step folder; kept apart so
that file stays small."""

from __future__ import annotations

from pathlib import Path
from shlex import quote

from lowdim.errors import LowdimError
from lowdim.option_words import counted
from lowdim.paths import named
from lowdim_sd import checkpoint_reading as reading
from lowdim_sd.checkpoint_file_info import (
    CHECKPOINTS,
    CheckpointView,
    complete_checkpoints,
    is_step_folder,
    read_checkpoint,
    saves,
)
from lowdim_sd.file_info_parts import FileInfo, bounded, listing, part, refusal


def run_folder_info(out: Path) -> FileInfo:
    """A run's OUT holding checkpoints: stopped before its end (its newest checkpoint, and the resume), or finished
    with outputs ``describe`` shows no one of (a --subjects run's adapters, a --full run's model)."""
    done = complete_checkpoints(out)
    if not done:
        return _unfinished_run_info(out)
    check = read_checkpoint(done[-1])
    where = ("checkpoint", f"{part(str(done[-1]))} (the newest of {len(done)})")
    written = [name for name in check.outputs if (out / name).exists()]
    checkpoint = {"folder": str(done[-1]), "checkpoints": len(done)}
    noun = {"hypernet.safetensors": "hypernetwork", "model": "model"}.get(
        check.outputs[0] if check.outputs else "", "adapters" if len(check.outputs) > 1 else "adapter")
    if check.outputs and len(written) == len(check.outputs):
        info = check.info(out, f"the folder of a finished lowdim {check.writer} run (its newest checkpoint: step "
                               f"{check.step})", "finished_run", [where], checkpoint=checkpoint, wrote=written)
        info.rows.insert(0, ("wrote", listing([bounded(name) for name in written])))
        info.use = f"lowdim show {quote(str(out / written[0]))}"
        return info
    said = f"{len(written)} of its {len(check.outputs)} {noun} written" if written else f"no {noun} written yet"
    writer = f"{check.writer} " if check.writer else ""
    return check.info(out, f"a lowdim {writer}run stopped at step {check.step} (its newest checkpoint; {said})",
                      "stopped_run", [where], checkpoint=checkpoint)


def checkpoints_folder(path: Path) -> Path | None:
    """``path`` as a run's ``OUT/checkpoints`` holding a step folder (absolute where it is named '.' or '..', as from
    inside it); None for any other folder."""
    folder = named(path)
    if folder.name != CHECKPOINTS or not any(is_step_folder(step) for step in saves(folder.parent)):
        return None
    return folder


def checkpoints_folder_info(folder: Path) -> FileInfo:
    """A run's ``OUT/checkpoints``: how many checkpoints it holds and at which steps, its newest as show of that step
    folder says it, whether the run finished, and the command that resumes from it (or why a resume refuses it)."""
    out = folder.parent
    done = complete_checkpoints(out)
    if not done:  # saves cut short alone: said as the run's OUT says it (a resume starts over)
        run = _unfinished_run_info(out)
        return FileInfo(folder, f"the checkpoints folder of {run.kind}", run.rows, run.use, run.values,
                        type="checkpoints_folder")
    check = read_checkpoint(done[-1])
    steps = [int(step.name.removeprefix("step-")) for step in done]
    cut = len(saves(out)) - len(done)
    said = f"{len(done):,} complete, at step{'s' * (len(done) > 1)} {listing([f'{step:,}' for step in steps])}"
    said += f"; and {counted(cut, 'save', grouped=True)} cut short, which the next save removes" if cut else ""
    written = [name for name in check.outputs if (out / name).exists()]
    finished = bool(check.outputs) and len(written) == len(check.outputs)
    writer = f"{check.writer} " if check.writer else ""
    kept = counted(len(done), "checkpoint", grouped=True)
    info = check.info(folder, f"the checkpoints folder of a lowdim {writer}run ({kept}, "
                              f"the newest at step {check.step})", "checkpoints_folder",
                      checkpoints={"count": len(done), "steps": steps, "cut_short": cut}, newest=str(done[-1]))
    rows = [("checkpoints", said), ("newest", part(str(done[-1])))]
    if check.outputs:  # what the run writes at its end, where its checkpoint records it
        rows.append(("run", _run_state(check, written, finished)))
        info.values["run"] = {"finished": finished, "wrote": written}
    at = int(bool(check.problems))  # after the damaged row a table starts with
    info.rows[at:at] = rows
    return info


def _run_state(check: CheckpointView, written: list[str], finished: bool) -> str:
    """Whether the run whose newest checkpoint ``check`` is wrote its outputs (``written`` of ``check.outputs``)."""
    if finished:
        return f"finished: wrote {listing([bounded(name) for name in written])} (--resume with more --steps goes on)"
    outputs = listing([bounded(name) for name in check.outputs])
    return f"stopped at step {check.step}: " + (f"wrote {len(written)} of {outputs}" if written else
                                                 f"{outputs} not written yet")


def _unfinished_run_info(out: Path) -> FileInfo:
    """A run's OUT whose only step folders are saves cut short (killed while writing its first checkpoint): nothing
    to continue from, so a resume starts over from step 0, unless a step folder is a link, which it refuses."""
    newest = saves(out)[-1]
    check = read_checkpoint(newest)
    writer = f"{check.writer} " if check.writer else ""
    info = check.info(out, f"a lowdim {writer}run stopped before its first checkpoint was finished (an unfinished "
                           f"save at step {check.step}; --resume starts from step 0)", "stopped_run",
                      [("checkpoint", f"none finished; {part(str(newest))} is a save cut short")],
                      checkpoint={"folder": None, "checkpoints": 0, "unfinished": str(newest), "resumes_at_step": 0})
    # rerun, it starts over whether or not --resume is given; with it, a later stop continues from its checkpoints
    info.use = f"lowdim {check.writer} ... -o {quote(str(out))} --resume" if check.writer else ""
    for folder in saves(out):
        try:
            reading.refuse_link(folder)  # as checkpoints.latest: a resume refuses the run, naming the link
        except LowdimError as error:
            info.rows.insert(0, ("refused", str(error)))
            info.values["refused"] = str(error)
            info.use = ""
            break
    return info


def checkpoints_left(info: FileInfo, out: Path) -> FileInfo:
    """A finished run's output (``info``) with a row for the checkpoints its OUT still holds, if any."""
    done = complete_checkpoints(out)
    if done:
        newest = int(done[-1].name.removeprefix("step-"))
        # what a --resume (more --steps) would refuse, said here: the output itself is fine, so no problem row
        refused = next(iter(read_checkpoint(done[-1]).problems), None)
        said = f"; --resume refuses it: {refusal(refused)}" if refused else ""
        info.rows.append(("checkpoints", f"{len(done)} left in {part(str(out / CHECKPOINTS))}, the newest at step "
                                         f"{newest}{said}"))
        info.values["checkpoints"] = {"count": len(done), "newest_step": newest, "folder": str(out / CHECKPOINTS),
                                      **({"resume_refused": refused} if refused else {})}
    return info
