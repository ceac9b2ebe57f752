"""The training engine's optimizer: torch's AdamW (or SGD with momentum), with its one-kernel update wherever
every parameter allows it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lowdim.errors import LowdimError

if TYPE_CHECKING:
    from lowdim_sd.train import TrainConfig


def make_optimizer(parameters: Sequence[Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``config``, at its rate, which ``with_defaults`` (``train``, ``run_train``) fills in."""
    rate = config.learning_rate
    if rate is None:  # torch's own refusal would be a TypeError from a comparison with None
        raise LowdimError("make_optimizer needs a rate: TrainConfig(learning_rate=...), or with_defaults(config)")
    fused = one_kernel_update(parameters)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=rate, momentum=0.9, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.AdamW(parameters, lr=rate, weight_decay=config.weight_decay, fused=fused)


def one_kernel_update(parameters: Sequence[Tensor]) -> bool | None:
    """``fused=`` for torch's optimizers: True where torch updates every parameter in one kernel, else None
    (torch's own choice: one parameter at a time on a CPU, a few multi-tensor kernels on a GPU).

    SD1.5's rank-relaxed LoRA has 352 small tensors: one at a time, AdamW dispatches about nine operations
    for each, 3,170 a step, more than the forward and backward together (benchmarks/count_step_launches.py).
    None, never False, for the rest: an explicit False would also turn off the multi-tensor path.
    """
    devices = {p.device.type for p in parameters}
    fusable = len(devices) == 1 and devices <= {"cpu", "cuda"}
    return True if fusable and all(p.is_floating_point() and not p.is_sparse for p in parameters) else None
