"""Resumable checkpoints of every training run (safetensors + JSON, written atomically).

``out/checkpoints/step-NNNNNN/`` holds the trained state, the optimizer state and ``state.json``,
written last: its presence marks a complete checkpoint. ``save``/``restore`` serve the SD engine
(``lowdim_sd.train``), ``save_hypernet``/``load_optimizer`` the hypernetwork (``lowdim_sd.hypertrain``);
both share the layout, the completion marker and the pruning.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.files import atomic_save, atomic_write
from lowdim.inject.state_guard import base_model_only
from lowdim.option_words import either

if TYPE_CHECKING:
    from lowdim_sd.loading import SDModel
    from lowdim_sd.train import Subject, Trainable

FOLDER = "checkpoints"


def _optimizer_tensors(optimizer: torch.optim.Optimizer, parameters: Sequence[Tensor]) -> dict[str, Tensor]:
    return _optimizer_tensors_of(optimizer.state, parameters)


def save(out_dir: Path, step: int, trainable: Trainable, optimizer: torch.optim.Optimizer, keep: int,
         settings: dict | None = None) -> Path:
    """Write step-NNNNNN/ with the trainable state, optimizer state, the step and the run's settings;
    prune old ones."""
    folder = step_folder(out_dir, step)
    atomic_save(trainable.state(), {"step": str(step)}, folder / "trainable.safetensors")
    atomic_save(_optimizer_tensors(optimizer, trainable.parameters), {"step": str(step)},
                folder / "optimizer.safetensors")
    return complete(folder, {"step": step, "time": time.time(), "settings": settings or {}}, keep)


def step_folder(out_dir: Path, step: int) -> Path:
    folder = Path(out_dir) / FOLDER / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def complete(folder: Path, state: dict, keep: int) -> Path:
    """Write ``state.json`` (last: its atomic presence marks the checkpoint complete); keep the newest ``keep``."""
    atomic_write(folder / "state.json", lambda temp: Path(temp).write_text(json.dumps(state)))
    steps = sorted(folder.parent.glob("step-*"))
    # A folder without state.json is a save a forced stop cut short: no checkpoint, and none to count as kept.
    for unfinished in [step for step in steps if step != folder and not (step / "state.json").is_file()]:
        shutil.rmtree(unfinished, ignore_errors=True)
    for old in [step for step in steps if (step / "state.json").is_file()][:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def save_hypernet(out: Path, step: int, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  trainable: Sequence[Tensor], metadata: dict, keep: int, settings: dict | None = None) -> Path:
    """A hypernetwork checkpoint: the network as a hypernet file (what personalize reads), AdamW's state and the
    run's settings (``check_resume``)."""
    from lowdim.hyper import save_hypernet as write_net

    folder = step_folder(out, step)
    write_net(folder / "hypernet.safetensors", net, {**metadata, "steps": step})
    state = getattr(optimizer, "optimizer", optimizer).state  # accelerate wraps the optimizer
    atomic_save(_optimizer_tensors_of(state, trainable), {"step": str(step)}, folder / "optimizer.safetensors")
    return complete(folder, {"step": step, "time": time.time(), "settings": settings or {}}, keep)


def check_resume(folder: Path, settings: dict) -> None:
    """Refuse to resume ``folder`` with other ``settings`` than the run that wrote it, naming each difference."""
    try:
        stored = json.loads((folder / "state.json").read_text()).get("settings") or {}
    except (OSError, ValueError, AttributeError) as error:
        raise LowdimError(f"{folder}: checkpoint is unreadable ({error}); delete it to resume from an older one") \
            from None
    _check_settings(folder, stored, settings)


def _optimizer_tensors_of(state: dict, parameters: Sequence[Tensor]) -> dict[str, Tensor]:
    return {f"{index}.{key}": torch.as_tensor(value).detach().cpu()
            for index, param in enumerate(parameters) for key, value in state.get(param, {}).items()}


def load_optimizer(optimizer: torch.optim.Optimizer, trainable: Sequence[Tensor], path: Path) -> None:
    """Load a hypernetwork checkpoint's optimizer state through ``load_state_dict``."""
    try:
        saved = load_file(str(path))
    except Exception as error:  # OSError or safetensors' own error
        raise LowdimError(f"{path}: unreadable optimizer state ({error}); delete the checkpoint folder") from None
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in saved.items():
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    if any(index >= len(trainable) for index in state):
        raise LowdimError(f"{path}: optimizer state for another network; delete the checkpoint folder")
    # load_state_dict puts each tensor where the optimizer wants it (e.g. Adam's step stays on the CPU).
    optimizer.load_state_dict({**optimizer.state_dict(), "state": state})


def saved_step(folder: Path) -> int:
    return int(json.loads((folder / "state.json").read_text())["step"])


def step_to_continue(folder: Path, steps: int) -> int:
    """A hypernetwork checkpoint's step, where a resume continues; one past ``steps`` is kept as it is (no step
    is undone), and said so rather than silently written as the result of a shorter run."""
    step = saved_step(folder)
    if step > steps:
        asked = either(f"--steps {steps}", f"steps={steps}")
        warnings.warn(f"the newest checkpoint is at step {step}, past {asked}: kept step {step} (to stop at "
                      f"an earlier step, delete the checkpoints after it)", stacklevel=3)
    return step


def latest(out_dir: Path) -> Path | None:
    done = [f for f in sorted((Path(out_dir) / FOLDER).glob("step-*")) if (f / "state.json").is_file()]
    return done[-1] if done else None


def restore(out_dir: Path, trainable: Trainable, optimizer: torch.optim.Optimizer, settings: dict | None = None) -> int:
    """Load the latest complete checkpoint; returns its step (0 when there is none).

    A checkpoint made with other ``settings`` is refused, naming each difference: resuming it would
    silently continue another run (other bases, data or recipe).
    """
    folder = latest(out_dir)
    if folder is None:
        return 0
    try:
        state = json.loads((folder / "state.json").read_text())
        _check_settings(folder, state.get("settings") or {}, settings or {})
        trainable.load_state(load_file(str(folder / "trainable.safetensors")))
        saved = load_file(str(folder / "optimizer.safetensors"))
        step = int(state["step"])
    except (OSError, ValueError, KeyError) as error:
        raise LowdimError(f"{folder}: checkpoint is unreadable ({error}); delete it to resume from an older one") \
            from None
    for index, param in enumerate(trainable.parameters):
        state = {key.split(".", 1)[1]: value.to(param.device) for key, value in saved.items()
                 if key.split(".", 1)[0] == str(index)}
        if state:
            optimizer.state[param] = state
    return step


def _check_settings(folder: Path, stored: dict, current: dict) -> None:
    current = json.loads(json.dumps(current))  # as stored: tuples become lists
    if not stored or not current or stored == current:
        return  # checkpoints from before settings were recorded resume as they always did
    old, new = stored.get("trainable", {}), current.get("trainable", {})
    different = [line for key in sorted(set(stored) | set(current))
                 if key not in ("trainable", "inputs") and stored.get(key) != current.get(key)
                 and (key in stored or key not in RECORDED_SINCE) for line in _differences(key, stored, current)]
    different += [_difference(key, old, new) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    different += _input_differences(stored.get("inputs"), current.get("inputs") or {})
    different = list(dict.fromkeys(different))  # the seed is the run's and its adapter's: said once
    if not different:
        return
    way_on = either("resume with the same options, or choose another --out",
                    "resume with the same settings, or choose another out")
    raise LowdimError(f"{folder}: checkpoint of a run with other settings: {'; '.join(different)}; {way_on}")


# Settings a checkpoint leaves out at their default (so that checkpoints made before they existed resume): a side
# without one had the default, which is what the message says, not "None".
LEFT_OUT_AT_DEFAULT = {"dropout": 0.0, "optimizer": "adamw", "processes": 1}  # processes: train-hypernet's


# Settings a checkpoint records since a later version: one made before says nothing of them, so they are compared
# only where it did (it resumes as it always did, checked on what it recorded).
RECORDED_SINCE = ("weight_folders", "extra_images")


def _differences(key: str, stored: dict, current: dict) -> list[str]:
    """One line per differing option: a nested one is named by its path (``hyper.width (64 there, 32 now)``), not
    shown as two whole dicts to compare by eye."""
    there, now = stored.get(key), current.get(key)
    if isinstance(there, dict) and isinstance(now, dict):
        return _nested_differences(key, there, now)
    return [_difference(key, stored, current)]


_UNSET = "not set"  # a nested option one side left out (at its default)


def _nested_differences(path: str, there: dict, now: dict) -> list[str]:
    lines = []
    for key in sorted(set(there) | set(now)):
        old, new = there.get(key, _UNSET), now.get(key, _UNSET)
        if old == new:
            continue
        name = f"{path}.{key}"
        both = isinstance(old, dict) and isinstance(new, dict)
        lines += _nested_differences(name, old, new) if both else [f"{name} ({old} there, {new} now)"]
    return lines


def _difference(key: str, stored: dict, current: dict) -> str:
    default = LEFT_OUT_AT_DEFAULT.get(key)
    return f"{key} ({stored.get(key, default)} there, {current.get(key, default)} now)"


def inputs_digest(model: SDModel, subjects: list[Subject], names: list[str]) -> dict:
    """What a run trains on, for ``restore`` to compare: each subject's reference pixels (as loaded, so
    cropping and resizing count) and a fingerprint of the base model's weights."""
    images = {name: _digest([subject.images]) for name, subject in zip(names, subjects, strict=True)}
    side = int(subjects[0].images.shape[-1]) if subjects else None  # --resolution, or the model's own
    return {"images": images, "model": weights_fingerprint(model), **({"resolution": side} if side else {})}


def weights_fingerprint(model: SDModel) -> str:
    """sha256 over every UNet, text encoder and VAE tensor's name, shape, dtype and up to 4096 evenly spaced
    values: another model (or another --dtype) differs, at a cost of milliseconds even for SD1.5 (hashing
    all 1.1 B weights would take seconds on every run)."""
    digest = hashlib.sha256()
    pipe = model.pipe
    for part in ("unet", "text_encoder", "vae"):
        with base_model_only():  # the slots' entries are skipped below: no need to hash their bases first
            state = getattr(pipe, part).state_dict()
        for name, tensor in state.items():
            if ".slots." in name:  # lowdim's own adapters are the run's trainable state, not the base model
                continue
            name = name.replace(".base_layer.", ".")  # the wrapped layer's weights, under their own name
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 4096)][:4096]
            digest.update(f"{part}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(sample.cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _digest(tensors: list[Tensor]) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _input_differences(stored: dict | None, current: dict) -> list[str]:
    if not stored:  # checkpoints from before inputs were recorded
        return []
    found = []
    old, new = stored.get("images", {}), current.get("images", {})
    there, now = stored.get("resolution"), current.get("resolution")
    if there and now and there != now:  # every picture differs then: the option is what to name
        found.append(f"{either('--resolution', 'resolution')} ({there} there, {now} now)")
    for name in sorted(set(old) | set(new)) if not found else []:
        if old.get(name) != new.get(name):
            # One subject (--images) has no name of its own; --subjects' are their folders'.
            whose = f" of subject '{name}'" if len(set(old) | set(new)) > 1 else ""
            found.append(f"the reference images{whose} differ (pixels, crop or size; digest {old.get(name)} "
                         f"there, {new.get(name)} now)")
    if stored.get("model") != current.get("model"):
        found.append(f"the base model differs (weights digest {stored.get('model')} there, {current.get('model')} "
                     f"now: another model, or another {either('--dtype', 'dtype')})")
    return found
