"""Resumable checkpoints of every training run (safetensors + JSON, written atomically).

``out/checkpoints/step-NNNNNN/`` holds the trained state, the optimizer state and ``state.json``,
written last: its presence marks a complete checkpoint. ``save``/``restore`` serve the SD engine
(``lowdim_sd.train``), ``save_hypernet``/``load_optimizer`` the hypernetwork (``lowdim_sd.hypertrain``);
both share the layout, the completion marker and the pruning. Reading one back checks every file against the run
first (``checkpoint_reading``): a damaged or foreign checkpoint is one line, never a traceback or a silent restart.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.files import atomic_save, atomic_write
from lowdim.inject.state_guard import base_model_only
from lowdim.option_words import either
from lowdim_sd import checkpoint_reading as reading
from lowdim_sd import stopping
from lowdim_sd.resume_words import listed
from lowdim_sd.train_job_words import job_option, reader_of

if TYPE_CHECKING:
    from lowdim_sd.loading import SDModel
    from lowdim_sd.train import Subject, Trainable, TrainConfig

FOLDER = "checkpoints"


def _optimizer_tensors(optimizer: torch.optim.Optimizer, parameters: Sequence[Tensor]) -> dict[str, Tensor]:
    return _optimizer_tensors_of(optimizer.state, parameters)


def save(out_dir: Path, step: int, trainable: Trainable, optimizer: torch.optim.Optimizer, keep: int,
         settings: dict | None = None, outputs: Sequence[Path] = ()) -> Path:
    """Write step-NNNNNN/ with the trainable state, optimizer state, the step and the run's settings;
    prune old ones. ``outputs``: the files a finished run wrote, of which this is the last step (``finish``)."""
    folder = step_folder(out_dir, step)
    atomic_save(trainable.state(), {"step": str(step)}, folder / "trainable.safetensors")
    _save_optimizer(_optimizer_tensors(optimizer, trainable.parameters), step, trainable.parameters, folder)
    state = {"step": step, "time": time.time(), "settings": settings or {}}
    return complete(folder, {**state, OUTPUTS: [Path(path).name for path in outputs]} if outputs else state, keep)


OUTPUTS = "outputs"  # in state.json: the files of the finished run whose last step the checkpoint holds


def keep_the_end(out_dir: Path, step: int, trainable: Trainable, optimizer: torch.optim.Optimizer,
                 config: TrainConfig, settings: dict, outputs: Sequence[Path], written: bool) -> None:
    """The SD engine's finished run: a later resume goes on from its end, never from an older checkpoint a stop
    left (it would redo every step since and rewrite the outputs). Full DreamBooth keeps that end only under
    ``checkpoint_every``: its checkpoint is the UNet and AdamW's two moments, about 10 GB at SD1.5."""
    if getattr(trainable, "trains_model_weights", False) and not config.checkpoint_every:
        shutil.rmtree(Path(out_dir) / FOLDER, ignore_errors=True)
        return
    keep = config.keep_checkpoints if config.checkpoint_every else 1  # a stop's leftover is no state to go back to
    with stopping.held():  # a signal waits for the checkpoint, as for the outputs before it
        finish(out_dir, step, trainable, optimizer, keep, settings, outputs, written)


def finish(out_dir: Path, step: int, trainable: Trainable, optimizer: torch.optim.Optimizer, keep: int,
           settings: dict, outputs: Sequence[Path], written: bool) -> Path:
    """A finished run's last step as the newest checkpoint, naming the files it wrote: a later resume with more
    steps continues from it, not from an older one a stop left (pruned here), and one with the same steps finds
    nothing to do (``says_finished``). ``written``: the run holds a checkpoint of that step already (a periodic
    one, or the one it resumed from), which is only marked."""
    folder = latest(out_dir)
    if written and folder is not None and saved_step(folder) == step:
        return complete(folder, {**reading.read_state(folder), OUTPUTS: [Path(path).name for path in outputs]}, keep)
    return save(out_dir, step, trainable, optimizer, keep, settings, outputs)


def finished_outputs(out_dir: Path) -> list[Path]:
    """The files of the finished run whose end is the newest checkpoint, when every one is still in ``out_dir``;
    none for a checkpoint of a stop (or one written before runs named their files)."""
    folder = latest(out_dir)
    names = reading.read_state(folder).get(OUTPUTS) if folder is not None else None
    if not isinstance(names, list) or not names or not all(_plain_name(name) for name in names):
        return []
    paths = [Path(out_dir) / name for name in names]
    return paths if all(path.exists() for path in paths) else []


def says_finished(out_dir: Path, steps: int) -> bool:
    """Whether the checkpoint a resume to ``steps`` starts from ends a finished run of that many steps whose files
    are all still there (``finished_outputs``): then it trains and rewrites nothing, and says so."""
    outputs = finished_outputs(out_dir)
    if outputs:
        longer = either(f"pass --steps above {steps}", f"give TrainConfig(steps=...) above {steps}")
        warnings.warn(f"{out_dir}: the run already finished at step {steps} ({', '.join(p.name for p in outputs)}); "
                      f"nothing to train, nothing rewritten: {longer} to train longer", stacklevel=3)
    return bool(outputs)


def _plain_name(name: object) -> bool:
    """A name of a file right in the run's folder (state.json is read from disk: never a path out of it)."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


def _save_optimizer(tensors: dict[str, Tensor], step: int, parameters: Sequence[Tensor], folder: Path) -> None:
    atomic_save(tensors, reading.optimizer_metadata(step, parameters, tensors), folder / "optimizer.safetensors")


def step_folder(out_dir: Path, step: int) -> Path:
    folder = Path(out_dir) / FOLDER / f"step-{step:06d}"
    reading.refuse_link(folder)  # written into, it would put the checkpoint wherever the link points
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def complete(folder: Path, state: dict, keep: int) -> Path:
    """Write ``state.json`` (last: its atomic presence marks the checkpoint complete); keep the newest ``keep``."""
    atomic_write(folder / "state.json", lambda temp: Path(temp).write_text(json.dumps(state)))
    steps = reading.step_folders(folder.parent)
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
    _save_optimizer(_optimizer_tensors_of(state, trainable), step, trainable, folder)
    return complete(folder, {"step": step, "time": time.time(), "settings": settings or {}}, keep)


def check_resume(folder: Path, settings: dict, worded: Worded | None = None) -> None:
    """Refuse to resume ``folder`` with other ``settings`` than the run that wrote it, naming each difference;
    ``worded(key, stored, current)``: a command's own words for a differing setting (its flag) in place of the
    setting's path."""
    _check_settings(folder, reading.read_state(folder).get("settings") or {}, settings, worded or _differences)


def _optimizer_tensors_of(state: dict, parameters: Sequence[Tensor]) -> dict[str, Tensor]:
    return {f"{index}.{key}": torch.as_tensor(value).detach().cpu()
            for index, param in enumerate(parameters) for key, value in state.get(param, {}).items()}


def load_optimizer(optimizer: torch.optim.Optimizer, trainable: Sequence[Tensor], path: Path) -> None:
    """Load a hypernetwork checkpoint's optimizer state, each entry checked against ``trainable`` first."""
    reading.load_optimizer_state(optimizer, trainable, path)


def saved_step(folder: Path) -> int:
    """A checkpoint's step: its folder's number, which its ``state.json`` must repeat."""
    return reading.checked_step(folder, reading.read_state(folder))


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
    """The newest complete checkpoint; a step folder that is a link is refused, naming it, complete or not (resumed
    from or written into, it would be wherever it points)."""
    folders = reading.step_folders(Path(out_dir) / FOLDER)
    for folder in folders:
        reading.refuse_link(folder)
    done = [folder for folder in folders if (folder / "state.json").is_file()]
    return done[-1] if done else None


def restore(out_dir: Path, trainable: Trainable, optimizer: torch.optim.Optimizer, settings: dict | None = None,
            worded: Worded | None = None) -> int:
    """Load the latest complete checkpoint; returns its step (0 when there is none).

    A checkpoint made with other ``settings`` is refused, naming each difference: resuming it would
    silently continue another run (other bases, data or recipe). ``worded``: as ``check_resume``'s, called once
    more with the key ``trainable`` when the trained state's signature differs.
    """
    folder = latest(out_dir)
    if folder is None:
        return 0
    state = reading.read_state(folder)
    step = reading.checked_step(folder, state)
    with reader_of(trainable):  # a TrainJob's fields, or what a low-level train() caller passed
        _check_settings(folder, state.get("settings") or {}, settings or {}, worded or _differences)
    weights = folder / "trainable.safetensors"
    tensors = reading.read_tensors(weights)[0]
    moments = reading.optimizer_state(optimizer, trainable.parameters, folder / "optimizer.safetensors")
    reading.load_trainable(trainable, weights, tensors)  # the first change to the run: every file was checked
    reading.put_optimizer_state(optimizer, moments)
    return step


Worded = Callable[[str, dict, dict], list[str]]
TRAINABLE = "trainable"  # the SD engine's settings: the trained state's signature (``Trainable.signature``)


def _check_settings(folder: Path, stored: dict, current: dict, worded: Worded) -> None:
    different = differences_between(stored, current, worded)
    if not different:
        return
    way_on = either("resume with the same options, or choose another --out",
                    "resume with the same settings, or choose another out")
    raise LowdimError(f"{folder}: checkpoint of a run with other settings: {listed(different)}; {way_on}")


def differences_between(stored: dict, current: dict, worded: Worded | None = None) -> list[str]:
    """What ``restore`` refuses a checkpoint's ``stored`` settings for, one line each; none: it resumes."""
    worded = worded or _differences
    current = json_text.loads(json.dumps(current))  # as stored: tuples become lists
    if not stored or not current or stored == current:
        return []  # checkpoints from before settings were recorded resume as they always did
    different = [line for key in sorted(set(stored) | set(current))
                 if key not in (TRAINABLE, "inputs", *NO_LONGER_COMPARED) and stored.get(key) != current.get(key)
                 and (key in stored or key not in RECORDED_SINCE) for line in worded(key, stored, current)]
    # The signature is worded whole: one of its keys tells what another's difference means (another space,
    # another config), or that it is another kind of run altogether.
    if (stored.get(TRAINABLE) or {}) != (current.get(TRAINABLE) or {}):
        different += worded(TRAINABLE, stored, current)
    merged_alike = _merged_part(stored.get(TRAINABLE)) == _merged_part(current.get(TRAINABLE))
    different += _input_differences(stored.get("inputs"), current.get("inputs") or {}, merged_alike)
    if stored.get("seed") == current.get("seed"):  # else the seed's own line says why every subject's differs
        different += _seed_differences(stored.get("inputs"), current.get("inputs") or {})
    return list(dict.fromkeys(different))  # the seed is the run's and its adapter's: said once


# Settings a checkpoint leaves out at their default (so that checkpoints made before they existed resume): a side
# without one had the default, which is what the message says, not "None".
LEFT_OUT_AT_DEFAULT = {"dropout": 0.0, "optimizer": "adamw", "processes": 1}  # processes: train-hypernet's


# Settings older checkpoints recorded that a resume may now change, as they change no result (``train.RESUMABLE``):
# never compared, so those checkpoints resume with them changed as newer ones do.
NO_LONGER_COMPARED = ("gradient_checkpointing",)


# Settings a checkpoint records since a later version: one made before says nothing of them, so they are compared
# only where it did (it resumes as it always did, checked on what it recorded).
RECORDED_SINCE = ("weight_folders", "extra_images")


def _differences(key: str, stored: dict, current: dict) -> list[str]:
    """One line per differing option: a nested one is named by its path (``hyper.width (64 there, 32 now)``), not
    shown as two whole dicts to compare by eye."""
    there, now = stored.get(key), current.get(key)
    if key == TRAINABLE:  # each of the signature's keys by its own name (``space_config (...)``)
        old, new = there or {}, now or {}
        return [_difference(name, old, new) for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
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
    seeds = {name: subject.seed for name, subject in zip(names, subjects, strict=True)}  # each one's draws
    side = _picture_size(subjects[0].images) if subjects else None  # --resolution, or the model's own
    return {"images": images, "seeds": seeds, "model": weights_fingerprint(model),
            **({"resolution": side} if side else {})}


def _picture_size(images: Tensor) -> int | str:
    """The side of square pictures, as checkpoints always recorded it (they keep resuming); "HxW" (height x
    width) for others, whose width alone would name two other sizes alike."""
    height, width = (int(side) for side in images.shape[-2:])
    return width if height == width else f"{height}x{width}"


def _other_size(there: object, now: object) -> bool:
    """Whether two recorded picture sizes differ. A checkpoint from before non-square ones were recorded whole says
    their width alone: one that width may be is no difference (their pixels' digest still tells)."""
    if not there or not now or there == now:
        return False
    widths = [str(size).rpartition("x")[2] for size in (there, now)]
    return not (isinstance(there, int) != isinstance(now, int) and widths[0] == widths[1])


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


def _merged_part(signature: dict | None) -> list | None:
    """What of the trained state a run folded into the base weights before their digest was taken (``--init``'s
    frozen initial adapter, merged by ``relax_rank``): the signature's frozen part, its components and its layers;
    None when nothing was merged."""
    signature = signature or {}
    config = signature.get("space_config") or {}
    if signature.get("space") != "stack" or not config.get("merge_frozen"):
        return None
    return [signature.get("frozen_part"), (config.get("components") or [])[:-1], signature.get("layer_set"),
            signature.get("layers")]


def _input_differences(stored: dict | None, current: dict, merged_alike: bool = True) -> list[str]:
    """The reference images and base model that differ. ``merged_alike``: both runs folded the same into the
    weights; else the weights digest differs by what was merged, which the signature's line names (another
    --init, --no-merge-frozen): it says nothing then of the model the user gave."""
    if not stored:  # checkpoints from before inputs were recorded
        return []
    found = []
    there, now = stored.get("resolution"), current.get("resolution")
    if _other_size(there, now):  # every picture differs then: the option is what to name
        found.append(f"{job_option('resolution')} ({there} there, {now} now)")
    else:
        found += _image_differences(stored.get("images") or {}, current.get("images") or {})
    if merged_alike and stored.get("model") != current.get("model"):
        found.append(f"the base model differs (weights digest {stored.get('model')} there, {current.get('model')} "
                     f"now: another model, or another {job_option('dtype')})")
    return found


def _seed_differences(stored: dict | None, current: dict) -> list[str]:
    """The subjects whose noise seed (their draws) differs, where both sides recorded them (older ones did not)."""
    old, new = (stored or {}).get("seeds"), current.get("seeds")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    if len(old) == len(new) == 1:
        old, new = {"": next(iter(old.values()))}, {"": next(iter(new.values()))}
    whose = {name: f" of subject '{name}'" if name else "" for name in old}
    return [f"the noise seed{whose[name]} ({old[name]} there, {new[name]} now)" for name in sorted(set(old) & set(new))
            if old[name] != new[name]]


def _image_differences(old: dict, new: dict) -> list[str]:
    if len(old) == len(new) == 1:
        # One subject each side is the same subject whatever its name: a --full run names it '0', an adapter run
        # by its file ('adapter') or its --subjects folder; another mode or folder is the signature's to name.
        old, new = {"": next(iter(old.values()))}, {"": next(iter(new.values()))}
    # A subject on one side only (a folder renamed, added or removed) has no pictures to compare with: the subjects
    # line names it, and its pictures are not said to differ from none.
    names = sorted(set(old) & set(new))
    several = len(set(old) | set(new)) > 1  # one subject has no name to give
    whose = {name: f" of subject '{name}'" if several else "" for name in names}
    return [f"the reference images{whose[name]} differ (pixels, crop or size; digest {old[name]} there, "
            f"{new[name]} now)" for name in names if old[name] != new[name]]
