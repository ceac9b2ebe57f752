"""``lowdim show`` of what ``lowdim train`` and ``lowdim train-hypernet`` keep to continue from: a step folder
(``OUT/checkpoints/step-NNNNNN``) and the files in it (the trained state, the optimizer state); a run's OUT folder
and its checkpoints folder are ``run_folder_info``'s. Each is said as the one checkpoint it is
(``read_checkpoint``): its step, what trains, its optimizer's state and how the run continues (``--resume``), or why
a resume refuses it.

The optimizer state's header holds no format key, so it is known by its layout (the metadata
``checkpoint_reading.optimizer_metadata`` writes, tensors named ``<param index>.<name>``); the trained state by its
place (``trainable.safetensors`` in a step folder); the command by the step folder's other file."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote

from lowdim.errors import LowdimError
from lowdim.option_words import counted
from lowdim.paths import is_plain_name
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
class CheckpointView:
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


def read_checkpoint(folder: Path) -> CheckpointView:
    """The step folder ``folder`` as show reads it (headers and state.json, no tensor): its rows and values, and why
    a resume would refuse it."""
    writer = next((writer for sibling, writer in WRITERS.items() if (folder / sibling).is_file()), None)
    named = int(folder.name.removeprefix("step-"))
    check = CheckpointView(folder, writer, named, (folder / STATE_FILE).is_file())
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


def _header(check: CheckpointView, path: Path) -> Header | None:
    """The header of a checkpoint's file; None, its problem noted, where a resume could not read it."""
    if not path.is_file():
        check.problems.append(str(reading.bad_file(path, "missing: a checkpoint holds it beside state.json")))
        return None
    try:
        return read_header(path)
    except LowdimError as error:
        check.problems.append(str(reading.bad_file(path, str(error).removeprefix(f"{path}: "))))
        return None


def _trained(check: CheckpointView, settings: dict) -> None:
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
        tensors = counted(len(header.shapes), "tensor", grouped=True)
        check.rows.append(("trained state", f"{counted(header.values, 'value', grouped=True)} in {tensors} ({name})"))
        check.values["trained state"] = {"file": name, "values": header.values, "tensors": len(header.shapes)}


def _adapter_trains(signature: object, check: CheckpointView) -> tuple[str, dict] | None:
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
    plain = [name for name in subjects if is_plain_name(name)]
    check.outputs = [f"{name}.safetensors" for name in plain] or ["adapter.safetensors"]
    space, config, layers = signature.get("space", "?"), signature.get("space_config", {}), signature.get("layers")
    layer_set = bounded(str(signature.get("layer_set")))
    count = counted(layers, "layer", grouped=True) if isinstance(layers, int) else f"{bounded(str(layers))} layers"
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
    return (f"a hypernetwork predicting {bounded(space)} {bounded(config)} on {counted(count, 'layer', grouped=True)} "
            f"({bounded(layer_set)})",
            {"network": "hypernetwork", "space": {"name": space, "config": config_object(config)},
             "layers": {"count": count, "set": meta.get("layer_set") or None}})


def _optimizer(check: CheckpointView) -> None:
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
    check = read_checkpoint(folder)
    return check.info(folder, check.name(), "checkpoint")


def trained_state_info(path: Path, header: Header) -> FileInfo:
    # its values and tensors are the "trained state" row's: its size said once more
    check = read_checkpoint(path.parent)
    return check.info(path, f"the trained state of {check.name()}", "trained_state", [("file", size_text(path))],
                      file={"bytes": path.stat().st_size})


def optimizer_state_info(path: Path, header: Header) -> FileInfo:
    rows, values = _file_rows(path, header)
    if _in_step_folder(path):
        check = read_checkpoint(path.parent)
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
