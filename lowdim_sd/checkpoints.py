"""Training checkpoints (safetensors + JSON, written atomically) and the progress bar."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.files import atomic_save, atomic_write

FOLDER = "checkpoints"


def _optimizer_tensors(optimizer: torch.optim.Optimizer, parameters: list[Tensor]) -> dict[str, Tensor]:
    tensors = {}
    for index, param in enumerate(parameters):
        for key, value in optimizer.state.get(param, {}).items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).detach().cpu()
    return tensors


def save(out_dir: Path, step: int, trainable, optimizer: torch.optim.Optimizer, keep: int,
         settings: dict | None = None) -> Path:
    """Write step-NNNNNN/ with the trainable state, optimizer state, the step and the run's settings;
    prune old ones."""
    folder = Path(out_dir) / FOLDER / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save(trainable.state(), {"step": str(step)}, folder / "trainable.safetensors")
    atomic_save(_optimizer_tensors(optimizer, trainable.parameters), {"step": str(step)},
                folder / "optimizer.safetensors")
    _write_json(folder / "state.json", {"step": step, "time": time.time(), "settings": settings or {}})
    for old in sorted((Path(out_dir) / FOLDER).glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _write_json(path: Path, payload: dict) -> None:
    # state.json is written last: its (atomic) presence marks a complete checkpoint
    atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(payload)))


def latest(out_dir: Path) -> Path | None:
    complete = [f for f in sorted((Path(out_dir) / FOLDER).glob("step-*")) if (f / "state.json").is_file()]
    return complete[-1] if complete else None


def restore(out_dir: Path, trainable, optimizer: torch.optim.Optimizer, settings: dict | None = None) -> int:
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
    different = [_difference(key, stored, current) for key in sorted(set(stored) | set(current))
                 if key != "trainable" and stored.get(key) != current.get(key)]
    different += [_difference(key, old, new) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    raise LowdimError(f"{folder}: checkpoint of a run with other settings: {'; '.join(different)}; resume with the "
                      f"same options, or choose another --out")


def _difference(key: str, stored: dict, current: dict) -> str:
    return f"{key} ({stored.get(key)} there, {current.get(key)} now)"


@contextlib.contextmanager
def progress_bar(total: int, start: int, enabled: bool = True) -> Iterator[Callable[[float], None]]:
    """A rich progress bar with loss and speed; ``advance(loss)`` moves it one step."""
    if not enabled:
        yield lambda loss: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("train", total=total, completed=start, loss="-", speed="")
        started, done = time.perf_counter(), 0

        def advance(loss: float) -> None:
            nonlocal done
            done += 1
            rate = done / max(time.perf_counter() - started, 1e-9)
            speed = f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it"
            bar.update(task, advance=1, loss=f"{loss:.4f}", speed=speed)

        yield advance
