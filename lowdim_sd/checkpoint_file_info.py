"""``lowdim show`` of what ``lowdim train`` and ``lowdim train-hypernet`` keep to continue from: a step folder
(``OUT/checkpoints/step-NNNNNN``), the files in it (the trained state, the optimizer state), and the OUT folder of a
run that stopped before writing its adapter or hypernetwork. Each is said as the one checkpoint it is (``_read``): its
step, what trains, its optimizer's state and how the run continues (``--resume``), or why a resume refuses it.

The optimizer state's header holds no format key, so it is known by its layout (the metadata
``checkpoint_reading.optimizer_metadata`` writes, tensors named ``<param index>.<name>``); the trained state by its
place (``trainable.safetensors`` in a step folder); the command by the step folder's other file."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote

from lowdim.errors import LowdimError
from lowdim_sd import checkpoint_reading as reading
from lowdim_sd.file_info_parts import (
    FileInfo,
    Header,
    bounded,
    compact,
    config_object,
    hypernet_values_problem,
    listing,
    number,
    parsed_json,
    part,
    read_header,
    refusal,
    size_text,
)

CHECKPOINTS = "checkpoints"  # checkpoints.FOLDER, in each run's OUT
STATE_FILE = "state.json"  # written last: its presence marks a complete checkpoint (checkpoints.complete)
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINED_FILE = "trainable.safetensors"
OPTIMIZER_METADATA = ("step", "parameters", "stateful")
_ENTRY = re.compile(r"^(\d+)\.(\w+)$")
# The step folder's other file says which command wrote it (lowdim_sd.checkpoints: save, save_hypernet).
WRITERS = {"hypernet.safetensors": "train-hypernet", TRAINED_FILE: "train"}


def is_optimizer_state(header: Header) -> bool:
    """Whether a header is a lowdim checkpoint's optimizer state: its metadata keys and entry names."""
    return (all(key in header.metadata for key in OPTIMIZER_METADATA)
            and all(_ENTRY.match(key) for key in header.shapes))


def is_step_folder(folder: Path) -> bool:
    """Whether ``folder`` is a run's ``checkpoints/step-N``, holding a file only a checkpoint's save writes (not
    hypernet.safetensors, which a train-hypernet OUT of that name would hold)."""
    return (reading.STEP_NAME.fullmatch(folder.name) is not None and folder.parent.name == CHECKPOINTS
            and folder.is_dir() and any((folder / name).is_file() for name in (STATE_FILE, OPTIMIZER_FILE,
                                                                                TRAINED_FILE)))


def is_trained_state(path: Path) -> bool:
    """Whether ``path`` is a train checkpoint's trained state (its header holds its step alone: known by its place)."""
    return path.name == TRAINED_FILE and is_step_folder(path.parent)


def saves(out: Path) -> list[Path]:
    """Every step folder in ``out``'s checkpoints, complete or cut short, oldest first (as ``checkpoints.latest``
    and ``checkpoints.complete`` see them)."""
    return reading.step_folders(Path(out) / CHECKPOINTS)


def complete_checkpoints(out: Path) -> list[Path]:
    """The complete step folders in ``out``'s checkpoints, oldest first: the last is what ``--resume`` continues
    from (``checkpoints.latest``)."""
    return [folder for folder in saves(out) if (folder / STATE_FILE).is_file()]


@dataclass
class _Checkpoint:
    """One step folder as show reads it: headers and state.json, no tensor."""

    folder: Path
    writer: str | None  # the command that wrote it; None: neither file that says so is there
    step: int
    complete: bool
    rows: list[tuple[str, str]] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # why a resume from it is refused, in the reader's words
    outputs: list[str] = field(default_factory=list)  # what the run writes into OUT at its end

    @property
    def out(self) -> Path:
        return self.folder.parent.parent

    def name(self) -> str:
        unfinished = "" if self.complete else "n unfinished"
        return f"a{unfinished} lowdim {self.writer + ' ' if self.writer else ''}checkpoint (step {self.step})"

    def use(self) -> str:
        if self.problems or not self.complete or not self.writer:
            return ""
        # a resume with other options is refused (checkpoints.check_resume): the run's own, then --resume
        return f"lowdim {self.writer} ... -o {quote(str(self.out))} --resume"

    def info(self, path: Path, kind: str, file_type: str, extra: Sequence[tuple[str, str]] = (),
             **values: object) -> FileInfo:
        """The checkpoint as ``path`` (itself, a file in it, its run's OUT; ``file_type`` of FILE_TYPES): its rows,
        then ``extra``'s (of that file, or of the run), and whether and how it resumes."""
        rows = [*self.rows, *extra]
        if not self.complete:  # a file missing there is why: the save was cut short
            rows.insert(0, ("unfinished", self._unfinished()))
        elif self.problems:
            rows.insert(0, ("damaged", self.problems[0]))
        else:
            rows.append(("resumed by", self._resumed_by()))
        return FileInfo(path, kind, rows, self.use(), {**self.values, **values}, type=file_type)

    def _unfinished(self) -> str:
        """What a resume does with a save cut short: passes it by (``checkpoints.latest``) for the newest complete
        checkpoint, or for none, starting from step 0; the first save it makes removes it (``checkpoints.complete``)."""
        said = f"no {STATE_FILE}, which a save writes last: a save cut short; "
        if complete_checkpoints(self.out):
            return said + "--resume continues from the newest complete checkpoint and the next save removes this one"
        return said + ("the run holds no finished checkpoint, so --resume starts from step 0 (as a run without it "
                       "does), and its first save removes this one")

    def _resumed_by(self) -> str:
        newest = complete_checkpoints(self.out)[-1:]
        said = (f"the command that wrote it, plus --resume: it continues from the newest checkpoint in "
                f"{part(str(self.out))}")
        if newest and newest[0].name != self.folder.name:
            said += f", step {int(newest[0].name.removeprefix('step-'))}, not this one"
        return said


def _read(folder: Path) -> _Checkpoint:
    writer = next((writer for sibling, writer in WRITERS.items() if (folder / sibling).is_file()), None)
    named = int(folder.name.removeprefix("step-"))
    check = _Checkpoint(folder, writer, named, (folder / STATE_FILE).is_file())
    state: dict = {}
    try:
        reading.refuse_link(folder)  # resumed from, it would be wherever the link points
        if check.complete:
            state = reading.read_state(folder)
            reading.checked_step(folder, state)
    except LowdimError as error:
        check.problems.append(str(error))
    check.rows.append(("step", str(named)))
    check.values["step"] = named
    if writer is None:
        check.problems.append(f"{folder}: holds neither {' nor '.join(WRITERS)}, the state a run trains; delete it "
                              f"to resume from an older one")
    else:
        _trained(check, state.get("settings") or {})
    _optimizer(check)
    return check


def _header(check: _Checkpoint, path: Path) -> Header | None:
    """The header of a checkpoint's file; None, its problem noted, where a resume could not read it."""
    if not path.is_file():
        check.problems.append(str(reading.bad_file(path, "missing: a checkpoint holds it beside state.json")))
        return None
    try:
        return read_header(path)
    except LowdimError as error:
        check.problems.append(str(reading.bad_file(path, str(error).removeprefix(f"{path}: "))))
        return None


def _trained(check: _Checkpoint, settings: dict) -> None:
    """What trains (the run's settings, or the hypernetwork's header) and the trained state's size."""
    name = next(sibling for sibling, writer in WRITERS.items() if writer == check.writer)
    header = _header(check, check.folder / name)
    if check.writer == "train-hypernet":
        trains = _hypernet_trains(header.metadata) if header else None
        check.outputs = ["hypernet.safetensors"]
        # the resume loads it as every load does, refusing NaN or Inf (a step of a run that diverged)
        if header is not None and (found := hypernet_values_problem(check.folder / name)):
            check.problems.append(str(reading.bad_file(check.folder / name, found)))
    else:
        trains = _adapter_trains(settings.get("trainable"), check)
    if trains is not None:
        check.rows.append(("trains", trains[0]))
        check.values["trains"] = trains[1]
    if header is not None:
        tensors = _count(len(header.shapes), "tensor")
        check.rows.append(("trained state", f"{_count(header.values, 'value')} in {tensors} ({name})"))
        check.values["trained state"] = {"file": name, "values": header.values, "tensors": len(header.shapes)}


def _adapter_trains(signature: object, check: _Checkpoint) -> tuple[str, dict] | None:
    """A train run's trained state as its settings record it (``AdapterTrainable.signature``, ``FullTrainable``'s);
    None where they say nothing of it (a checkpoint from before they were recorded)."""
    if not isinstance(signature, dict) or not signature:
        return None
    if isinstance(signature.get("full"), list):
        parts = [str(name) for name in signature["full"]]
        check.outputs = ["model"]
        return f"the model's own weights: {bounded(' and '.join(parts))} (--full)", {"full": parts}
    listed = signature.get("subjects")
    subjects = [str(name) for name in listed] if isinstance(listed, list) else []
    # state.json is read from disk: a subject named as a path is no file of this run's to look for
    plain = [name for name in subjects if name not in ("", ".", "..") and Path(name).name == name]
    check.outputs = [f"{name}.safetensors" for name in plain] or ["adapter.safetensors"]
    space, config, layers = signature.get("space", "?"), signature.get("space_config", {}), signature.get("layers")
    layer_set = bounded(str(signature.get("layer_set")))
    count = _count(layers, "layer") if isinstance(layers, int) else f"{bounded(str(layers))} layers"
    text = f"{bounded(str(space))} {bounded(compact(config))} on {count} ({layer_set})"
    if len(subjects) > 1:
        text += f"; one adapter for each of {len(subjects)} subjects: {listing([bounded(s) for s in subjects])}"
    return text, {"space": {"name": space, "config": config},
                  "layers": {"count": layers, "set": signature.get("layer_set")}, "subjects": subjects}


def _hypernet_trains(meta: dict[str, str]) -> tuple[str, dict] | None:
    if "space" not in meta:  # no hypernetwork file's metadata: what it predicts is not known
        return None
    layers = parsed_json(meta.get("layers"), [])
    count = len(layers) if isinstance(layers, list) else 0
    space, config, layer_set = meta.get("space", "?"), meta.get("space_config", ""), meta.get("layer_set") or "?"
    return (f"a hypernetwork predicting {bounded(space)} {bounded(config)} on {_count(count, 'layer')} "
            f"({bounded(layer_set)})",
            {"network": "hypernetwork", "space": {"name": space, "config": config_object(config)},
             "layers": {"count": count, "set": meta.get("layer_set") or None}})


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _optimizer(check: _Checkpoint) -> None:
    path = check.folder / OPTIMIZER_FILE
    header = _header(check, path)
    if header is None:
        return
    if not is_optimizer_state(header):
        check.problems.append(str(reading.bad_file(path, "not the optimizer state a checkpoint holds (its metadata "
                                                         "or tensor names are another file's)")))
        return
    check.rows.append(_parameters_row(header))
    meta = header.metadata
    check.values["parameters"] = {"count": number(meta.get("parameters")), "with_state": number(meta.get("stateful"))}


def _parameters_row(header: Header) -> tuple[str, str]:
    meta = header.metadata
    names = sorted({match.group(2) for key in header.shapes if (match := _ENTRY.match(key))})
    # Texts from the file, each cut where a stranger's runs to 100 KB (an entry's name); --json: whole.
    listed = ", ".join(map(bounded, names[:5])) + (", ..." if len(names) > 5 else "")
    return ("parameters", f"{bounded(str(meta.get('parameters')))}, {bounded(str(meta.get('stateful')))} holding a "
                          f"state ({listed})")


def _file_rows(path: Path, header: Header) -> tuple[list[tuple[str, str]], dict[str, object]]:
    return ([("tensors", f"{len(header.shapes):,} holding {header.values:,} values"), ("file", size_text(path))],
            {"tensors": {"count": len(header.shapes), "values": header.values}, "file": {"bytes": path.stat().st_size}})


def step_folder_info(folder: Path) -> FileInfo:
    check = _read(folder)
    return check.info(folder, check.name(), "checkpoint")


def trained_state_info(path: Path, header: Header) -> FileInfo:
    check = _read(path.parent)  # its values and tensors are the "trained state" row's: its size said once more
    return check.info(path, f"the trained state of {check.name()}", "trained_state", [("file", size_text(path))],
                      file={"bytes": path.stat().st_size})


def run_folder_info(out: Path) -> FileInfo:
    """A run's OUT holding checkpoints: stopped before its end (its newest checkpoint, and the resume), or finished
    with outputs ``describe`` shows no one of (a --subjects run's adapters, a --full run's model)."""
    done = complete_checkpoints(out)
    if not done:
        return _unfinished_run_info(out)
    check = _read(done[-1])
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
    folder = Path(os.path.abspath(path)) if path.name in ("", ".", "..") else path
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
    check = _read(done[-1])
    steps = [int(step.name.removeprefix("step-")) for step in done]
    cut = len(saves(out)) - len(done)
    said = f"{len(done):,} complete, at step{'s' * (len(done) > 1)} {listing([f'{step:,}' for step in steps])}"
    said += f"; and {_count(cut, 'save')} cut short, which the next save removes" if cut else ""
    written = [name for name in check.outputs if (out / name).exists()]
    finished = bool(check.outputs) and len(written) == len(check.outputs)
    writer = f"{check.writer} " if check.writer else ""
    info = check.info(folder, f"the checkpoints folder of a lowdim {writer}run ({_count(len(done), 'checkpoint')}, "
                              f"the newest at step {check.step})", "checkpoints_folder",
                      checkpoints={"count": len(done), "steps": steps, "cut_short": cut}, newest=str(done[-1]))
    rows = [("checkpoints", said), ("newest", part(str(done[-1])))]
    if check.outputs:  # what the run writes at its end, where its checkpoint records it
        rows.append(("run", _run_state(check, written, finished)))
        info.values["run"] = {"finished": finished, "wrote": written}
    at = int(bool(check.problems))  # after the damaged row a table starts with
    info.rows[at:at] = rows
    return info


def _run_state(check: _Checkpoint, written: list[str], finished: bool) -> str:
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
    check = _read(newest)
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
        refused = next(iter(_read(done[-1]).problems), None)
        said = f"; --resume refuses it: {refusal(refused)}" if refused else ""
        info.rows.append(("checkpoints", f"{len(done)} left in {part(str(out / CHECKPOINTS))}, the newest at step "
                                         f"{newest}{said}"))
        info.values["checkpoints"] = {"count": len(done), "newest_step": newest, "folder": str(out / CHECKPOINTS),
                                      **({"resume_refused": refused} if refused else {})}
    return info


def optimizer_state_info(path: Path, header: Header) -> FileInfo:
    rows, values = _file_rows(path, header)
    if _in_step_folder(path):
        check = _read(path.parent)
        return check.info(path, f"the optimizer state of {check.name()}", "optimizer_state", rows, **values)
    # Moved out of its step folder: no run finds it there, and only its own metadata says what it is.
    meta = header.metadata
    step, parameters, stateful = (number(meta.get(key)) for key in OPTIMIZER_METADATA)
    shown_step = bounded(str(step))
    use = (f"a run resumes from it in its own OUT/checkpoints/step-{step:06d} folder (the command that wrote "
           f"it, plus --resume)" if isinstance(step, int) else "")
    return FileInfo(path, f"the optimizer state of a lowdim checkpoint (step {shown_step})",
                    [("step", shown_step), _parameters_row(header), *rows], use,
                    {"step": step, "parameters": {"count": parameters, "with_state": stateful}, **values},
                    type="optimizer_state")


def _in_step_folder(path: Path) -> bool:
    folder = path.parent
    return path.name == OPTIMIZER_FILE and is_step_folder(folder) and any((folder / name).is_file() for name in WRITERS)
