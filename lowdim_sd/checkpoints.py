"""Resumable checkpoints of every training run (safetensors + JSON, written atomically).

``out/checkpoints/step-NNNNNN/`` holds the trained state, the optimizer state and ``state.json``,
written last: its presence marks a complete checkpoint. ``save``/``restore`` serve the SD engine
(``lowdim_sd.train``), ``save_hypernet``/``load_optimizer`` the hypernetwork (``lowdim_sd.hypertrain``);
both share the layout, the completion marker and the pruning. Reading one back checks every file against the run
first (``checkpoint_reading``): a damaged or foreign checkpoint is one line, never a traceback or a silent restart.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lowdim.files import atomic_save, atomic_write
from lowdim.option_words import either
from lowdim.paths import is_plain_name
from lowdim_sd import checkpoint_reading as reading
from lowdim_sd import stopping

# re-exported: train_job_words and hypertrain_resume read the first two here, precompute_batches the third
from lowdim_sd.checkpoint_settings import LEFT_OUT_AT_DEFAULT as LEFT_OUT_AT_DEFAULT
from lowdim_sd.checkpoint_settings import TRAINABLE as TRAINABLE
from lowdim_sd.checkpoint_settings import Worded, check_settings
from lowdim_sd.checkpoint_settings import differences_between as differences_between
from lowdim_sd.train_job_words import reader_of

if TYPE_CHECKING:
    from lowdim_sd.train import Trainable, TrainConfig

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
    if not isinstance(names, list) or not names or not all(is_plain_name(name) for name in names):
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
    check_settings(folder, reading.read_state(folder).get("settings") or {}, settings, worded)


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
        check_settings(folder, state.get("settings") or {}, settings or {}, worded)
    weights = folder / "trainable.safetensors"
    tensors = reading.read_tensors(weights)[0]
    moments = reading.optimizer_state(optimizer, trainable.parameters, folder / "optimizer.safetensors")
    reading.load_trainable(trainable, weights, tensors)  # the first change to the run: every file was checked
    reading.put_optimizer_state(optimizer, moments)
    return step
