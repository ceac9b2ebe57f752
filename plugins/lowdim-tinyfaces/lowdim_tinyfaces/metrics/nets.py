"""Small CNN building blocks and the safetensors + JSON weight format.

No pickle anywhere: weights are a ``.safetensors`` file (fp16 floats) and the
architecture is a JSON config next to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from safetensors.torch import load_file
from torch import Tensor, nn

from lowdim import json_text
from lowdim.files import atomic_save, atomic_write

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_weights(module: nn.Module, config: dict, name: str, directory: Path | None = None) -> Path:
    """Write ``name.safetensors`` (floats as fp16) and ``name.json``; returns the tensor file."""
    directory = WEIGHTS_DIR if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        value = value.detach().cpu()
        tensors[key] = (value.half() if value.is_floating_point() else value).contiguous()
    path = directory / f"{name}.safetensors"
    atomic_save(tensors, {"format": "pt", "config": json.dumps(config)}, path)
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(directory / f"{name}.json", lambda temp: Path(temp).write_text(text))
    return path


def load_weights(name: str, directory: Path | None = None) -> tuple[dict, dict[str, Tensor]]:
    """Read the JSON config and the tensors (floats widened to fp32)."""
    directory = WEIGHTS_DIR if directory is None else Path(directory)
    config = json_text.loads((directory / f"{name}.json").read_text())
    tensors = load_file(str(directory / f"{name}.safetensors"))
    return config, {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}


def load_into(module: ModuleT, tensors: dict[str, Tensor]) -> ModuleT:
    """``module`` holding ``tensors``, frozen and in eval mode (the same object, so callers keep its type)."""
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"weight mismatch: missing={missing} unexpected={unexpected}")
    return module.eval().requires_grad_(False)
