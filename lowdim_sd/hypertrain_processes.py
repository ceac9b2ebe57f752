"""What ``train-hypernet`` asks of HF accelerate: the Accelerator for a job (formed once every process of a launched
run got there: ``process_failures``), what every process of a run agrees on (whether the time budget is spent, a
loss's mean), and the trained network taken back out of accelerate's wrapping as ``load_hypernet`` would give it."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any, cast, overload

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim_sd.devices import accelerator_available
from lowdim_sd.process_failures import join_the_others

if TYPE_CHECKING:
    from lowdim.hyper.head import HyperHead
    from lowdim_sd.hypertrain import HyperTrainJob


def make_accelerator(job: HyperTrainJob) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs

    try:
        # Encoders carry parts the hypernetwork never uses (e.g. ViT's pooler): DDP must not wait for their grads.
        unused = DistributedDataParallelKwargs(find_unused_parameters=True)
        # At one image per process, a ViT's cls_token gradient is a view of the whole embedding's: DDP copies it
        # into its bucket (correct, and a few bytes) but would warn about it in every process of every run.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        cpu = job.cpu or not accelerator_available()  # else accelerate stays single-process on CPU machines
        join_the_others()  # forming the process group would wait forever for a process that failed before it
        return Accelerator(mixed_precision=job.mixed_precision, cpu=cpu, kwargs_handlers=[unused])
    except ValueError as error:  # accelerate's state is per process: one setting for the process's lifetime
        raise LowdimError(f"accelerate: {error}") from None


def handed_over(accelerator: Any, net: torch.nn.Module) -> HyperHead:
    """The trained ``net`` as ``load_hypernet`` returns a saved one: unwrapped (DDP, and the mixed-precision
    forward), in eval mode, on the CPU and with no gradient kept. A caller holds the result for its validation:
    gradients and a place on the GPU would keep twice the network's memory there for as long as it does."""
    head = cast("HyperHead", accelerator.unwrap_model(net, keep_fp32_wrapper=False))
    for parameter in head.parameters():
        parameter.grad = None
    return head.to("cpu").eval()


def out_of_time(accelerator: Any, started: float, max_minutes: float | None) -> bool:
    """Whether the time budget is spent; every process agrees, so none waits for the others forever."""
    if max_minutes is None:
        return False
    late = torch.tensor(float(time.perf_counter() - started > 60 * max_minutes), device=accelerator.device)
    return float(accelerator.reduce(late, reduction="max")) > 0


@overload
def process_mean(accelerator: Any, value: Tensor) -> float: ...
@overload
def process_mean(accelerator: Any, value: None) -> None: ...
def process_mean(accelerator: Any, value: Tensor | None) -> float | None:
    """The mean over processes of a loss (every process calls this, in the same order)."""
    return None if value is None else float(accelerator.reduce(value.detach(), reduction="mean"))
