"""Checkpointing without pickles: safetensors for tensors, JSON for everything else.

``torch.save`` is avoided on purpose (pickles execute code on load); the AdamW
state is flattened into named tensors and its param groups go to JSON.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lowdim import json_text


class EMA:
    """Exponential moving average of parameters, warmed up so early steps count."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.shadow = {
            f"{m}.{n}": p.detach().clone()
            for m, mod in modules.items()
            for n, p in mod.named_parameters()
        }

    @torch.no_grad()
    def update(self, modules: dict[str, nn.Module], step: int) -> None:
        # min() warm-up: with a fixed 0.999 the first thousand steps would be dominated by init.
        d = min(self.decay, (1 + step) / (10 + step))
        for m, mod in modules.items():
            for n, p in mod.named_parameters():
                self.shadow[f"{m}.{n}"].lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def copy_to(self, modules: dict[str, nn.Module]) -> None:
        for m, mod in modules.items():
            for n, p in mod.named_parameters():
                p.copy_(self.shadow[f"{m}.{n}"])


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    """AdamW state as flat named tensors plus its JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{idx}.{key}"] = t.detach().cpu().reshape(-1).clone()
    return tensors, sd["param_groups"]


def load_optimizer_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: Any
) -> None:
    template = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = t.reshape(()) if key == "step" else t
    # Restore original shapes from the parameters they belong to.
    params = [p for g in opt.param_groups for p in g["params"]]
    for idx, st in state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                st[key] = st[key].reshape(params[idx].shape)
    template["state"] = state
    template["param_groups"] = groups
    opt.load_state_dict(template)


PARTS = ("weights", "optim", "ema")
FORMAT = "lowdim_tinyfaces.checkpoint"


def save_checkpoint(
    folder: Path,
    name: str,
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer | None,
    ema: EMA | None,
    meta: dict[str, Any],
) -> None:
    """Write a checkpoint of stage ``name`` that a stop at any moment leaves whole.

    Its tensor files get names of their own (never the ones the current checkpoint reads), and the
    JSON naming them is renamed into place last: until then ``--resume`` reads the previous
    checkpoint, all of it. The files it no longer names are removed after.
    """
    folder.mkdir(parents=True, exist_ok=True)
    parts: dict[str, dict[str, torch.Tensor]] = {"weights": {
        f"{m}.{k}": v.detach().cpu().contiguous().clone()
        for m, mod in modules.items()
        for k, v in mod.state_dict().items()
    }}
    groups = None
    if opt is not None:
        parts["optim"], groups = optimizer_tensors(opt)
    if ema is not None:
        parts["ema"] = {k: v.cpu() for k, v in ema.shadow.items()}
    generation = f"{int(meta.get('step', 0)):08d}-{secrets.token_hex(3)}"
    files = {part: f"{name}.{generation}.{part}.safetensors" for part in parts}
    for part, tensors in parts.items():
        save_file(tensors, folder / files[part], metadata={"format": FORMAT, "stage": name, "part": part,
                                                           "step": str(meta.get("step", 0))})
    meta = {**meta, "param_groups": groups, "files": files}
    tmp = folder / f"{name}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / f"{name}.json")
    _remove_unnamed(folder, name, set(files.values()))


def _remove_unnamed(folder: Path, name: str, kept: set[str]) -> None:
    """Tensor files of stage ``name`` the committed checkpoint does not name: older ones, or a stopped save's."""
    for path in folder.glob(f"{name}.*.safetensors"):
        if path.name not in kept and path.name.split(".")[-2] in PARTS:
            path.unlink(missing_ok=True)


def checkpoint_files(folder: Path, name: str, meta: dict[str, Any]) -> dict[str, Path]:
    """The tensor files a checkpoint's JSON names (checkpoints written before it named them: fixed names)."""
    files = meta.get("files") or {part: f"{name}.{part}.safetensors" for part in PARTS}
    return {part: folder / file for part, file in files.items() if (folder / file).exists()}


def load_checkpoint(
    folder: Path,
    name: str,
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer | None,
    ema: EMA | None,
) -> dict[str, Any] | None:
    """Load ``{name}`` into the given objects; ``None`` if there is no checkpoint."""
    meta_path = folder / f"{name}.json"
    if not meta_path.exists():
        return None
    meta = json_text.loads(meta_path.read_text())
    files = checkpoint_files(folder, name, meta)
    weights = load_file(files["weights"])
    for m, mod in modules.items():
        prefix = f"{m}."
        own = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        mod.load_state_dict(own)
    if opt is not None and "optim" in files:
        load_optimizer_tensors(opt, load_file(files["optim"]), meta["param_groups"])
    if ema is not None and "ema" in files:
        device = next(iter(ema.shadow.values())).device  # where the modules are, as the EMA was made there
        ema.shadow = load_file(files["ema"], device=str(device))
    return meta
