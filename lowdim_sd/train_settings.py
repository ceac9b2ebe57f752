"""What one training run is told (``TrainConfig``) and gives back (``TrainResult``), apart from the engine
in ``lowdim_sd.train`` so that settings can be built and checked without it."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim_sd import defaults, runs

IDENTIFIER = "[V]"
MIXED_PRECISION = runs.MIXED_PRECISION
OPTIMIZERS = ("adamw", "sgd")
ENGINE_LR = 1e-3  # the rate of ``train`` called with none: TrainConfig's default before the modes had their own


@dataclass
class TrainConfig:
    steps: int = defaults.STEPS
    # None: the run's default (TrainJob: its mode's, defaults.learning_rate; ``train`` alone: ENGINE_LR), so a
    # rate the caller set is told apart from one nobody chose, even when the two are equal.
    learning_rate: float | None = None
    batch_size: int = 1
    grad_accum: int = 1
    prompt: str = "a [V] face"
    token: str = "sks"
    seed: int = 0
    augment: bool = True
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    max_grad_norm: float | None = 1.0
    weight_decay: float = 0.0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    # "adamw", or "sgd" (momentum 0.9): plain gradient steps, whose result is a smooth function of the
    # images; AdamW's per-coordinate normalisation moves weak, noisy coordinates as far as strong ones.
    optimizer: str = "adamw"
    # > 0: add lowdim_sd.style_delta's loss with this weight, over these prompts (each with [V]).
    keep_styles: float = 0.0
    style_prompts: tuple[str, ...] = ()
    # Replay the text encoder's and the UNet's forward and backward from CUDA graphs (lowdim_sd.step_graphs):
    # the same steps, far fewer kernel launches on a host-bound GPU.
    cuda_graphs: bool = False

    def validate(self) -> None:
        """One line naming the first setting no training can run with (before any model loads)."""
        problems = [
            (self.steps < 0, f"--steps must be >= 0, got {self.steps}"),
            (self.learning_rate is not None and not (math.isfinite(self.learning_rate) and self.learning_rate > 0),
             f"--lr must be a positive number, got {self.learning_rate}"),
            (self.batch_size < 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.grad_accum < 1, f"--grad-accum must be >= 1, got {self.grad_accum}"),
            (self.mixed_precision not in MIXED_PRECISION,
             f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got '{self.mixed_precision}'"),
            (self.max_grad_norm is not None and not self.max_grad_norm > 0,
             f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}"),
            (not self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.checkpoint_every < 0, f"--checkpoint-every must be >= 0 (0: never), got {self.checkpoint_every}"),
            (self.keep_checkpoints < 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (self.optimizer not in OPTIMIZERS,
             f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'"),
            (not (math.isfinite(self.keep_styles) and self.keep_styles >= 0),
             f"--keep-styles must be a number >= 0, got {self.keep_styles}"),
        ]
        for failed, message in problems:
            if failed:
                raise LowdimError(message)


def with_rate(config: TrainConfig, default: float = ENGINE_LR) -> TrainConfig:
    """``config`` with its learning rate set: its own, else ``default``; a copy, the caller's is never changed."""
    return config if config.learning_rate is not None else replace(config, learning_rate=default)


def job_rate(config: TrainConfig, given: float | None, owner: str, default: float) -> TrainConfig:
    """``config`` with the rate a job runs at: the job's own (``given``, --lr) or the config's, else ``default``;
    two different ones are one line. A copy: the caller's config may serve several jobs."""
    if given is not None and config.learning_rate is not None and given != config.learning_rate:
        raise LowdimError(f"two learning rates: {owner}(learning_rate={given}) and TrainConfig(learning_rate="
                          f"{config.learning_rate}); set one of them")
    return with_rate(config if given is None else replace(config, learning_rate=given), default)


def as_path(value: object, owner: str, name: str) -> Path:
    """A job's path field as a Path: from Python a str is as natural as the CLI's Path, and the runs join and
    make folders with these; anything else is one line, not a TypeError from deep inside the run."""
    if not isinstance(value, (str, os.PathLike)):
        raise LowdimError(f"{owner}: {name}= takes a path (a str or Path), got a {type(value).__name__}")
    return Path(value)


def refuse_inference_mode() -> None:
    """Training needs autograd, which ``train`` turns back on under ``torch.no_grad()``; not under
    ``torch.inference_mode()``, whose tensors (the model's, the adapters') can never join a graph."""
    if torch.is_inference_mode_enabled():
        raise LowdimError("training cannot run inside torch.inference_mode(): its tensors can never take part in "
                          "autograd; call it outside that block (torch.no_grad() around it is fine)")


@dataclass
class Subject:
    images: Tensor  # (N, 3, H, W) in [-1, 1]
    seed: int = 0


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    start_step: int = 0
    outputs: list[Path] = field(default_factory=list)


def fill_prompt(prompt: str, token: str) -> str:
    if IDENTIFIER not in prompt:
        warnings.warn(f"prompt '{prompt}' has no {IDENTIFIER}: the subject will not be tied to an identifier",
                      stacklevel=2)
    return prompt.replace(IDENTIFIER, token)
