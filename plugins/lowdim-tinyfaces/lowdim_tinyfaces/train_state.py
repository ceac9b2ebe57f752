"""Checkpointing without pickles: safetensors for tensors, JSON for everything else.

``torch.save`` is avoided on purpose (pickles execute code on load); the AdamW
state is flattened into named tensors and its param groups go to JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


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
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = t.reshape(()) if key == "step" else t
    # Restore original shapes from the parameters they belong to.
    params = [p for g in opt.param_groups for p in g["params"]]
    for idx, st in state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                st[key] = st[key].reshape(params[idx].shape)
    template["state"] = state
    template["param_groups"] = groups
    opt.load_state_dict(template)


def save_checkpoint(
    folder: Path,
    name: str,
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer | None,
    ema: EMA | None,
    meta: dict[str, Any],
) -> None:
    """Write ``{name}.*`` files atomically enough: tensors first, the JSON last.

    The JSON is the commit point: ``--resume`` only trusts a checkpoint whose
    JSON exists, and it is renamed into place after all tensors are on disk.
    """
    folder.mkdir(parents=True, exist_ok=True)
    weights = {
        f"{m}.{k}": v.detach().cpu().contiguous().clone()
        for m, mod in modules.items()
        for k, v in mod.state_dict().items()
    }
    save_file(weights, folder / f"{name}.weights.safetensors")
    groups = None
    if opt is not None:
        tensors, groups = optimizer_tensors(opt)
        save_file(tensors, folder / f"{name}.optim.safetensors")
    if ema is not None:
        save_file({k: v.cpu() for k, v in ema.shadow.items()}, folder / f"{name}.ema.safetensors")
    meta = {**meta, "param_groups": groups}
    tmp = folder / f"{name}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / f"{name}.json")


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
    meta = json.loads(meta_path.read_text())
    weights = load_file(folder / f"{name}.weights.safetensors")
    for m, mod in modules.items():
        prefix = f"{m}."
        own = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        mod.load_state_dict(own)
    optim_path = folder / f"{name}.optim.safetensors"
    if opt is not None and optim_path.exists():
        load_optimizer_tensors(opt, load_file(optim_path), meta["param_groups"])
    if ema is not None and (folder / f"{name}.ema.safetensors").exists():
        device = next(iter(ema.shadow.values())).device  # where the modules are, as the EMA was made there
        ema.shadow = load_file(folder / f"{name}.ema.safetensors", device=str(device))
    return meta
