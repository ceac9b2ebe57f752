"""The step loop of a hypernetwork run (train-hypernet): each step validated, checkpointed and timed as the job
asks, and what a stop, an unreadable pair or another process's failure leaves of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from lowdim_sd import stopping
from lowdim_sd.hypertrain_io import PairUnreadable
from lowdim_sd.hypertrain_processes import out_of_time
from lowdim_sd.process_failures import another_failure

if TYPE_CHECKING:
    from lowdim_sd.hypertrain import _Loop
    from lowdim_sd.hypertrain_job import HyperTrainResult


def run_steps(loop: _Loop, result: HyperTrainResult, advance: Callable[..., None], started: float) -> None:
    """The training steps, each validated, checkpointed and timed as the job asks; a stop keeps what it can."""
    job = loop.job
    try:
        for batch in loop.loader:
            stopping.check()  # a signal's stop, if its KeyboardInterrupt was swallowed
            value = loop.update(batch)
            result.losses.append(value)
            advance(value)
            if loop.validating and (loop.step % job.val_every == 0 or loop.step == job.steps):
                loop.validate()
            if job.checkpoint_every and loop.step % job.checkpoint_every == 0 and loop.main:
                loop.checkpoint()
            if out_of_time(loop.accelerator, started, job.max_minutes):
                if loop.validating and loop.step % job.val_every:
                    loop.validate()  # the stopping step gets its validation, as the last step would
                break
    except (KeyboardInterrupt, torch.OutOfMemoryError) as stop:
        loop.stopped(stop)
    except PairUnreadable as unreadable:
        loop.unreadable(unreadable)
    except RuntimeError as error:  # a collective that another process's end broke, or this process's own error
        failure = another_failure(error)
        if failure is None:
            raise
        loop.another_failed(failure)
