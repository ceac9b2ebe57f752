"""Adapters for the merge tests: a LiDB and a LoRA of the tiny model, each with non-zero values of its own."""

from __future__ import annotations

from pathlib import Path

import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import resolve_layers


def write_two_adapters(tiny_sd: Path, folder: Path) -> list[Path]:
    """lidb.safetensors and lora.safetensors in ``folder`` (seeds 0 and 1), as a user's two trained adapters."""
    paths = []
    for seed, space in enumerate(("lidb", "lora")):
        view = lowdim.Adapters(load_sd(str(tiny_sd), device="cpu", dtype="fp32").modules)
        view.add("default", lowdim.get_space(space), resolve_layers(None), seed=seed)
        generator = torch.Generator().manual_seed(seed)
        for parameter in view.parameters("default"):
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.3
        paths.append(lowdim.save_adapter(folder / f"{space}.safetensors", view, "default"))
    return paths
