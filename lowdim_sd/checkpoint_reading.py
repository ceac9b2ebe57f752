"""Reading a checkpoint back for ``--resume``, every file checked before anything is used.

A checkpoint folder may be someone else's (a shared run folder) or edited by hand. Each problem is one line naming
the folder or file and what is wrong, ending with the advice to delete it so that an older checkpoint resumes. A
resumed run equals an unbroken one or is refused: never continued with a fresh optimizer or from NaN values.
``checkpoints`` (``restore``, ``load_optimizer``, ``check_resume``, ``latest``) is the caller.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.foreign_files import CUT_SHORT, describe_foreign

STEP_NAME = re.compile(r"step-(\d+)")
PARAMETER_INDEX = re.compile(r"0|[1-9]\d*")


def step_folders(parent: Path) -> list[Path]:
    """The ``step-N`` folders in ``parent`` by step number: past a million steps the names grow a digit, so name
    order would put step-1000000 before step-999999. Other names are no checkpoint of lowdim's and are left alone."""
    found = [(int(match.group(1)), path) for path in parent.glob("step-*")
             if (match := STEP_NAME.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def refuse_link(folder: Path) -> None:
    """A step folder that is a symbolic link would be resumed from, or written into, wherever it points."""
    if folder.is_symlink():
        raise LowdimError(f"{folder} is a symbolic link (to {os.readlink(folder)}); a run neither resumes from nor "
                          f"writes into a checkpoint outside its own folder: remove the link")


def unreadable(folder: Path, why: object) -> LowdimError:
    return LowdimError(f"{folder}: checkpoint is unreadable ({why}); delete it to resume from an older one")


def read_state(folder: Path) -> dict:
    """``state.json``: an object whose settings have the shapes ``checkpoint_settings.check_settings`` compares."""
    try:
        state = json_text.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as error:  # UnicodeDecodeError and json_text.NestedTooDeeply are ValueErrors
        raise unreadable(folder, error) from None
    if not isinstance(state, dict):
        raise unreadable(folder, f"state.json holds {_shown(state)}, not an object")
    problem = _settings_problem(state.get("settings"))
    if problem:
        raise unreadable(folder, f"state.json's {problem}")
    return state


def _settings_problem(settings: Any) -> str | None:
    """Which part of a checkpoint's settings is not an object where one is compared key by key (None is absent)."""
    parts = {"settings": settings}
    if isinstance(settings, dict):
        parts |= {"settings.trainable": settings.get("trainable"), "settings.inputs": settings.get("inputs")}
        if isinstance(settings.get("inputs"), dict):
            parts["settings.inputs.images"] = settings["inputs"].get("images")
    return next((f"{name} is {_shown(value)}, not an object" for name, value in parts.items()
                 if value is not None and not isinstance(value, dict)), None)


def checked_step(folder: Path, state: dict) -> int:
    """The checkpoint's step: a whole number, at least 0, its folder's own (``step-000004`` holds step 4)."""
    step = state.get("step")
    match = STEP_NAME.fullmatch(folder.name)
    own = int(match.group(1)) if match else None
    if type(step) is not int or step < 0 or step != own:  # type(): True is an int to isinstance
        raise unreadable(folder, f"state.json's step is {_shown(step)}, not {own if own is not None else 'a step'} "
                                 f"as the folder's name says")
    return step


def _shown(value: Any) -> str:
    """A value from a file, short and on one line: its repr where that is short, else its kind."""
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 40 else f"a {type(value).__name__} of {len(text)} characters"
    return f"a {type(value).__name__}"


def bad_file(path: Path, why: str) -> LowdimError:
    return LowdimError(f"{path}: {why}; delete the checkpoint folder {path.parent.name} to resume from an older one")


def read_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """A checkpoint's tensors and metadata; a damaged file, or a NaN or infinite value, is refused naming ``path``
    (training on from one would end in a NaN loss blamed on the learning rate)."""
    try:
        with safe_open(str(path), "pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (no __iter__)
            metadata = handle.metadata() or {}
    except Exception as error:  # OSError, or safetensors' own error on a damaged file
        cut = _cut_short(path)
        if cut is not None:
            raise cut_checkpoint(path, cut) from None
        raise bad_file(path, f"not a readable .safetensors file ({' '.join(str(error).split())})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise bad_file(path, f"{_quoted(name)} holds NaN or infinite values")
    return tensors, metadata


def _cut_short(path: Path) -> str | None:
    """'a .safetensors file cut short (...)' where ``path`` is one (asked only once safetensors refused it)."""
    try:
        foreign = describe_foreign(path)
    except OSError:
        return None
    return foreign if foreign is not None and foreign.startswith(CUT_SHORT) else None


def cut_checkpoint(path: Path, cut: str) -> LowdimError:
    """A checkpoint's file cut short: its save (or a copy of the run folder) stopped part way. Saves are atomic, so
    the older checkpoint the run folder keeps is whole: resume from it, or, with none, from step 0."""
    folder = path.parent
    older = []
    if STEP_NAME.fullmatch(folder.name):
        steps = step_folders(folder.parent)
        older = [done for done in steps[:steps.index(folder)] if (done / "state.json").is_file()] \
            if folder in steps else []
    then = (f"delete the checkpoint folder {folder.name} to resume from {older[-1].name}" if older else
            f"delete the checkpoint folder {folder.name}: the run keeps no older checkpoint, so a stopped run "
            f"starts again from step 0 (a finished one, its output written, runs again with --overwrite)")
    return LowdimError(f"{path}: {cut}: this checkpoint was not written whole (a save or a copy stopped part way); "
                       f"{then}")


def in_checkpoint_words(path: Path, error: LowdimError) -> LowdimError:
    """A reader's refusal of ``path``, a file of a checkpoint it resumes from (a train-hypernet checkpoint's
    network, read by ``load_hypernet``): where the file is cut short, told as every checkpoint file is
    (``cut_checkpoint``: delete this checkpoint to resume from the older one), not a download's "copy it again"."""
    cut = _cut_short(path)
    return cut_checkpoint(path, cut) if cut is not None else error


def load_trainable(trainable: Any, path: Path, tensors: dict[str, Tensor]) -> None:
    """``trainable.load_state(tensors)``, its refusal (a layer or shape that does not fit) naming ``path``."""
    try:
        trainable.load_state(tensors)
    except (LowdimError, RuntimeError, ValueError, KeyError) as error:  # RuntimeError: torch's load_state_dict
        raise bad_file(path, " ".join(str(error).split())) from None


def optimizer_metadata(step: int, parameters: Sequence[Tensor], tensors: dict[str, Tensor]) -> dict[str, str]:
    """What a load checks the state against: how many parameters the run trains, and how many hold a state."""
    stateful = {key.partition(".")[0] for key in tensors}
    return {"step": str(step), "parameters": str(len(parameters)), "stateful": str(len(stateful))}


OptimizerState = dict[int, dict[str, Tensor]]  # by parameter index, as torch's load_state_dict takes it


def load_optimizer_state(optimizer: torch.optim.Optimizer, parameters: Sequence[Tensor], path: Path) -> None:
    """Put the state saved at ``path`` into ``optimizer``, once ``optimizer_state`` has checked it."""
    put_optimizer_state(optimizer, optimizer_state(optimizer, parameters, path))


def optimizer_state(optimizer: torch.optim.Optimizer, parameters: Sequence[Tensor], path: Path) -> OptimizerState:
    """The state saved at ``path`` (keyed ``<parameter index>.<name>``), each entry checked to be what ``optimizer``
    keeps for that parameter: its names, for parameters this run has, of the parameter's shape."""
    saved, metadata = read_tensors(path)
    layout = _layout(optimizer)
    state = _by_parameter(saved, layout, type(optimizer).__name__, path)
    _check_count(state, metadata, len(parameters), path)
    for index, entries in sorted(state.items()):
        _check_entries(index, entries, parameters[index], layout, path)
        _check_signs(index, entries, _never_negative(optimizer), path)
    return state


def put_optimizer_state(optimizer: torch.optim.Optimizer, state: OptimizerState) -> None:
    # load_state_dict puts each tensor where the optimizer wants it (e.g. Adam's step stays on the CPU).
    optimizer.load_state_dict({**optimizer.state_dict(), "state": state})


def _by_parameter(saved: dict[str, Tensor], layout: dict[str, bool], kind: str,
                  path: Path) -> OptimizerState:
    names = sorted(layout)
    state: OptimizerState = {}
    for key, value in saved.items():
        index, _, name = key.partition(".")
        if not PARAMETER_INDEX.fullmatch(index) or name not in names:
            raise bad_file(path, f"unknown optimizer state {_quoted(key)} ({kind} keeps "
                                 f"{', '.join(names)} for each parameter, keyed <parameter index>.<name>)")
        state.setdefault(int(index), {})[name] = value
    return state


def _check_count(state: OptimizerState, metadata: dict[str, str], count: int, path: Path) -> None:
    saved_count = _number(metadata, "parameters", path)
    if saved_count == count and max(state, default=-1) >= count:  # "2 parameters; this run trains 2" says nothing
        raise bad_file(path, f"optimizer state for another network, or an edited one: it holds a state for parameter "
                             f"{max(state)}, past the {count} parameters this run trains and its metadata records")
    if (state and max(state) >= count) or saved_count not in (None, count):
        of = saved_count if saved_count is not None else f"at least {max(state) + 1}"
        raise bad_file(path, f"optimizer state for another network ({of} parameters; this run trains {count})")
    stateful = _number(metadata, "stateful", path)
    if stateful is not None and stateful != len(state):
        raise bad_file(path, f"holds the state of {len(state)} parameters, but was saved with {stateful}: some are "
                             f"missing")


def _number(metadata: dict[str, str], key: str, path: Path) -> int | None:
    """A count from the file's metadata; None in files saved before it was recorded."""
    if key not in metadata:
        return None
    if not metadata[key].isdecimal():
        raise bad_file(path, f"its metadata's {key} is {_shown(metadata[key])}, not a count")
    return int(metadata[key])


def _check_entries(index: int, entries: dict[str, Tensor], parameter: Tensor, layout: dict[str, bool],
                   path: Path) -> None:
    missing = sorted(set(layout) - set(entries))
    if missing:
        raise bad_file(path, f"optimizer state for parameter {index} lacks {', '.join(missing)}")
    for name, value in sorted(entries.items()):
        expected = () if layout[name] else tuple(parameter.shape)
        if tuple(value.shape) != expected:
            raise bad_file(path, f"optimizer state for parameter {index}: {name} has shape {tuple(value.shape)}, "
                                 f"expected {expected}")
        if name == "step" and float(value) < 0:
            raise bad_file(path, f"optimizer state for parameter {index}: step is {float(value)}, below 0")


def _never_negative(optimizer: torch.optim.Optimizer) -> frozenset[str]:
    """The states ``optimizer`` keeps that can never be below 0: Adam's and AdamW's second moments (a running mean
    of squared gradients, and its running maximum under amsgrad), whose square root the next step takes. Other
    optimizers' states are not guessed at (SGD's momentum, say, is signed)."""
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):  # AdamW is no Adam in older torch
        return frozenset({"exp_avg_sq", "max_exp_avg_sq"})
    return frozenset()


def _check_signs(index: int, entries: dict[str, Tensor], never_negative: frozenset[str], path: Path) -> None:
    """A negative second moment makes the next step's square root NaN: refused here, not blamed on --lr there."""
    for name in sorted(never_negative & set(entries)):
        value = entries[name]
        if bool((value < 0).any()):
            raise bad_file(path, f"optimizer state for parameter {index}: {name} holds a negative value "
                                 f"({float(value.min()):.3g}), which Adam's second moment never is")


def _layout(optimizer: torch.optim.Optimizer) -> dict[str, bool]:
    """What ``optimizer`` keeps for each parameter, by name: True for a number (AdamW's step), False for a tensor of
    the parameter's shape. Learnt from one step of the same optimizer on a throwaway parameter, so AdamW's amsgrad
    and SGD's momentum are what they are in this run."""
    probe = torch.nn.Parameter(torch.ones(2))
    takes = inspect.signature(type(optimizer)).parameters  # AdamW's defaults hold a decoupled_weight_decay it fixes
    options = {key: value for key, value in optimizer.defaults.items() if key in takes
               and key not in ("fused", "foreach", "capturable", "differentiable")}  # how it runs, not what it keeps
    twin = type(optimizer)([probe], **options)
    probe.grad = torch.ones(2)
    twin.step()
    return {name: torch.as_tensor(value).dim() == 0 for name, value in twin.state[probe].items()}


def _quoted(key: str) -> str:
    """A tensor name from a file, quoted on one line and cut short."""
    return repr(key if len(key) <= 80 else key[:80] + "...")
