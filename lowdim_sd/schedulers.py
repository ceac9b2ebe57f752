"""The samplers `lowdim generate --scheduler` draws with, set on a pipeline for one call."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError

if TYPE_CHECKING:
    from lowdim_sd.loading import SDModel

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "ddpm": "DDPMScheduler",
}


def check_scheduler(name: str) -> None:
    if name not in SCHEDULERS:
        raise LowdimError(f"unknown scheduler '{name}'; known: {', '.join(SCHEDULERS)}")


def set_scheduler(model: SDModel, name: str) -> None:
    check_scheduler(name)
    import diffusers

    scheduler_class = getattr(diffusers, SCHEDULERS[name])
    model.pipe.scheduler = scheduler_class.from_config(model.pipe.scheduler.config)


@contextlib.contextmanager
def scheduled(model: SDModel, name: str) -> Iterator[None]:
    """The pipeline draws with scheduler ``name`` for the block, then has its own back: a caller's pipeline is
    left as it was given."""
    before = model.pipe.scheduler
    set_scheduler(model, name)
    try:
        yield
    finally:
        model.pipe.scheduler = before
