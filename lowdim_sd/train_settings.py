"""What one training run is told (``TrainConfig``) and gives back (``TrainResult``), apart from the engine
in ``lowdim_sd.train`` so that settings can be built and checked without it."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.option_words import option
from lowdim.paths import expand_user
from lowdim_sd import defaults, runs

IDENTIFIER = "[V]"
DEFAULT_TOKEN = "sks"  # the word [V] stands for when nothing names another
MIXED_PRECISION = runs.MIXED_PRECISION
OPTIMIZERS = ("adamw", "sgd")
ENGINE_LR = 1e-3  # the rate of ``train`` called with none: TrainConfig's default before the modes had their own


@dataclass
class TrainConfig:
    """How one training run trains: its steps, rate, prompt and word, what each step draws, and what it keeps.

    ``steps``: optimizer steps (``run_train``: at least 1). ``learning_rate``: None for the run's default (a
    ``TrainJob``'s mode's, ``lowdim_sd.defaults.learning_rate``; ``train`` alone: 1e-3), so a rate set is told
    apart from one nobody chose. ``batch_size``: images of each subject per step; ``grad_accum``: steps whose
    gradients add up before one update. ``prompt``: the training caption, where ``[V]`` stands for ``token``, the
    rare word the subject is learned under (one word, no spaces). ``token`` None means the default: ``sks``, or in
    ``run_train`` with ``TrainJob(initial=...)`` the word the initial adapter learned, since its frozen part answers
    to it. ``seed``: the adapter's init, the noise, the timesteps and the augmentation. ``augment``: random flips
    and small crops of the references. ``mixed_precision``: ``"no"``, ``"fp16"`` or ``"bf16"`` autocast.
    ``gradient_checkpointing``: recompute activations in the backward, less memory for more compute.
    ``max_grad_norm``: clip each subject's gradient to this norm (None: no clipping). ``weight_decay``: the
    optimizer's. ``checkpoint_every``: a resumable checkpoint every N steps (0: never); ``keep_checkpoints``: how
    many of the latest are kept. ``optimizer``: ``"adamw"``, or ``"sgd"`` (momentum 0.9), whose plain gradient
    steps make the result a smooth function of the images. ``keep_styles``: above 0, the weight of a loss that keeps
    the model's styles (``lowdim_sd.style_delta``) over ``style_prompts`` (each with ``[V]``). ``cuda_graphs``:
    replay the text encoder's and UNet's forward and backward from CUDA graphs (``lowdim_sd.step_graphs``): the
    same steps, far fewer kernel launches on a host-bound GPU.
    """

    steps: int = defaults.STEPS
    # None: the run's default (TrainJob: its mode's, defaults.learning_rate; ``train`` alone: ENGINE_LR), so a
    # rate the caller set is told apart from one nobody chose, even when the two are equal.
    learning_rate: float | None = None
    batch_size: int = 1
    grad_accum: int = 1
    prompt: str = "a [V] face"
    # None: DEFAULT_TOKEN, or run_train's initial adapter's own word (``modes.initial_token``), told apart, as the
    # rate is, from an explicit word, which a run from an initial adapter under another word warns about.
    token: str | None = None
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

    def validate(self, owner: str = "TrainConfig", least_steps: int = 0) -> None:
        """One line naming the first setting no training can run with (before any model loads). ``owner``: the
        class whose fields a Python caller set (personalize checks its own as a ``PersonalizeJob``'s);
        ``least_steps``: 1 where a run with no step would save its untrained start."""
        self._check_types(owner)
        name = {field: option(field, owner, FLAGS.get(field)) for field in RANGES}
        problems = [
            (self.steps < least_steps, f"{name['steps']} must be >= {least_steps}, got {self.steps}"),
            (self.learning_rate is not None and not (math.isfinite(self.learning_rate) and self.learning_rate > 0),
             f"{name['learning_rate']} must be a positive number, got {self.learning_rate}"),
            (self.batch_size < 1, f"{name['batch_size']} must be >= 1, got {self.batch_size}"),
            (self.grad_accum < 1, f"{name['grad_accum']} must be >= 1, got {self.grad_accum}"),
            (self.mixed_precision not in MIXED_PRECISION,
             f"{name['mixed_precision']} must be one of {', '.join(MIXED_PRECISION)}, got '{self.mixed_precision}'"),
            (self.max_grad_norm is not None and not self.max_grad_norm > 0,
             f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}"),
            (not self.weight_decay >= 0, f"{name['weight_decay']} must be >= 0, got {self.weight_decay}"),
            (self.checkpoint_every < 0,
             f"{name['checkpoint_every']} must be >= 0 (0: never), got {self.checkpoint_every}"),
            (self.keep_checkpoints < 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (self.optimizer not in OPTIMIZERS,
             f"{name['optimizer']} must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'"),
            (not (math.isfinite(self.keep_styles) and self.keep_styles >= 0),
             f"{name['keep_styles']} must be a number >= 0, got {self.keep_styles}"),
        ]
        for failed, message in problems:
            if failed:
                raise LowdimError(message)

    def _check_types(self, owner: str) -> None:
        """A setting of the wrong type from Python (``learning_rate="x"``, ``token=5``) is one line, not a
        TypeError from the comparisons after it; the CLI's own parsing already gives the right types."""
        check_types(self, NUMBERS | SWITCHES, owner, optional=("learning_rate", "max_grad_norm"), flags=FLAGS)
        if self.token is not None and not isinstance(self.token, str):
            raise LowdimError(f"{option('token', owner)} must be one word (a str) or None, got {self.token!r:.40}")


# The settings whose CLI flag is not the field's name with dashes; and those validate compares as numbers.
FLAGS = {"learning_rate": "--lr"}
NUMBERS: dict[str, type] = {
    "steps": numbers.Integral, "learning_rate": numbers.Real, "batch_size": numbers.Integral,
    "grad_accum": numbers.Integral, "seed": numbers.Integral, "max_grad_norm": numbers.Real,
    "weight_decay": numbers.Real, "checkpoint_every": numbers.Integral, "keep_checkpoints": numbers.Integral,
    "keep_styles": numbers.Real}
SWITCHES: dict[str, type] = {"augment": bool, "gradient_checkpointing": bool, "cuda_graphs": bool}  # "no": truthy
RANGES = ("steps", "learning_rate", "batch_size", "grad_accum", "mixed_precision", "weight_decay",
          "checkpoint_every", "optimizer", "keep_styles")


def check_types(settings: object, kinds: Mapping[str, type], owner: str, optional: Collection[str] = (),
                flags: Mapping[str, str] | None = None) -> None:
    """Each of ``settings``' fields in ``kinds`` is of its kind (``numbers.Integral``, ``numbers.Real`` or ``bool``;
    None too for those in ``optional``), else one line naming the first that is not, as ``owner(field=...)`` from
    Python or by its flag (``flags``, else the field with dashes) on the command line. A bool is no number here
    (``steps=True``), and only a bool is a switch: ``crop="no"`` would otherwise be truthy and crop."""
    for name, kind in kinds.items():
        value = getattr(settings, name)
        if value is None and name in optional:
            continue
        if kind is bool:
            fits, what = isinstance(value, bool), "True, False or None" if name in optional else "True or False"
        else:
            fits = isinstance(value, kind) and not isinstance(value, bool)
            what = "an integer" if kind is numbers.Integral else "a number"
        if not fits:
            raise LowdimError(f"{option(name, owner, (flags or {}).get(name))} must be {what}, got {value!r:.40}")


def with_defaults(config: TrainConfig, default: float = ENGINE_LR) -> TrainConfig:
    """``config`` with what it leaves unset filled in: the learning rate (``default``) and the word [V] stands for
    (DEFAULT_TOKEN; ``run_train`` sets an initial adapter's own first). A copy: the caller's is never changed."""
    if config.learning_rate is not None and config.token is not None:
        return config
    return replace(config, learning_rate=default if config.learning_rate is None else config.learning_rate,
                   token=DEFAULT_TOKEN if config.token is None else config.token)



def check_job_rate(given: float | None, owner: str) -> None:
    """A job's own rate (``TrainJob(learning_rate=...)``, --lr) checked under the job's name, before it joins the
    config, whose check would name a ``TrainConfig`` the caller never built."""
    if given is not None:
        TrainConfig(learning_rate=given).validate(owner=owner)


def job_rate(config: TrainConfig, given: float | None, owner: str, default: float) -> TrainConfig:
    """``config`` with the rate a job runs at: the job's own (``given``, --lr) or the config's, else ``default``;
    two different ones are one line. An unset token is filled in too (``with_defaults``). A copy: the caller's
    config may serve several jobs."""
    if given is not None and config.learning_rate is not None and given != config.learning_rate:
        raise LowdimError(f"two learning rates: {owner}(learning_rate={given}) and TrainConfig(learning_rate="
                          f"{config.learning_rate}); set one of them")
    return with_defaults(config if given is None else replace(config, learning_rate=given), default)


def as_path(value: object, owner: str, name: str) -> Path:
    """A job's path field as a Path: from Python a str is as natural as the CLI's Path, and the runs join and
    make folders with these; anything else is one line, not a TypeError from deep inside the run. A leading
    ``~`` is the home folder, as the CLI expands it: left as it is, a run would make a folder named ``~``."""
    if not isinstance(value, (str, os.PathLike)):
        raise LowdimError(f"{owner}: {name}= takes a path (a str or Path), got a {type(value).__name__}")
    return expand_user(value)


def refuse_inference_mode() -> None:
    """Training needs autograd, which ``train`` turns back on under ``torch.no_grad()``; not under
    ``torch.inference_mode()``, whose tensors (the model's, the adapters') can never join a graph."""
    if torch.is_inference_mode_enabled():
        raise LowdimError("training cannot run inside torch.inference_mode(): its tensors can never take part in "
                          "autograd; call it outside that block (torch.no_grad() around it is fine)")


@dataclass
class Subject:
    """One subject ``train`` learns: ``images``, its reference pictures as one (N, 3, H, W) tensor in [-1, 1] at
    the training resolution (``lowdim_sd.images.load_references`` makes it from files), and ``seed``, which draws
    its noise, timesteps and augmentation (``run_train`` gives subject i the config's seed + i)."""

    images: Tensor  # (N, 3, H, W) in [-1, 1]
    seed: int = 0


def check_subjects(subjects: Sequence[Subject], factor: int) -> None:
    """Pictures one training batch can take, else one line naming the subject (its place in the list, from 0)
    and the sizes, before any model call: each side a multiple of the VAE's ``factor`` (latents are that much
    smaller), and every subject's pictures the size of the first's, since all are stacked into one batch."""
    sizes = []
    for index, subject in enumerate(subjects):
        images = subject.images
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise LowdimError(f"subject {index}'s images must be one (N, 3, H, W) tensor, got {shape}")
        height, width = images.shape[-2:]
        if height % factor or width % factor:
            raise LowdimError(f"subject {index}'s pictures are {height}x{width} (height x width): each side must be "
                              f"a multiple of {factor}, the VAE's downscaling factor")
        sizes.append((height, width))
        if sizes[index] != sizes[0]:
            raise LowdimError(f"subject {index}'s pictures are {height}x{width} (height x width), subject 0's "
                              f"{sizes[0][0]}x{sizes[0][1]}: subjects trained together are stacked into one batch, "
                              f"so all their pictures must be one size")


@dataclass
class TrainResult:
    """What a run did. ``losses``: the loss of each step this call ran. ``start_step``: the steps done before it (0,
    or where the checkpoint a resumed run continued left off), so the run ended at ``start_step + len(losses)``.
    ``seconds``: the wall time of this call's steps, not the model's load or the final save. ``outputs``: the
    adapter files (one per subject) or, for full DreamBooth, the model folder it wrote; none without an output
    folder."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    start_step: int = 0
    outputs: list[Path] = field(default_factory=list)


def config_token(config: TrainConfig) -> str:
    """The word ``config`` trains under: its token, or DEFAULT_TOKEN when unset (as ``fill_prompt`` reads it)."""
    return DEFAULT_TOKEN if config.token is None else config.token


def fill_prompt(prompt: str, token: str | None) -> str:
    """``prompt`` with [V] replaced by ``token`` (None: DEFAULT_TOKEN, a ``TrainConfig``'s unset word)."""
    if IDENTIFIER not in prompt:
        warnings.warn(f"prompt '{prompt}' has no {IDENTIFIER}: the subject will not be tied to an identifier",
                      stacklevel=2)
    return prompt.replace(IDENTIFIER, DEFAULT_TOKEN if token is None else token)
