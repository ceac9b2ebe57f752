"""Models wrapped for data parallelism (``nn.DataParallel``, ``DistributedDataParallel``): the adapters live on
the model inside, as accelerate's ``unwrap_model`` sees it, so a wrapper and its ``.module`` are one model to lowdim
and a file names the model's own layers, never ``module.``-prefixed ones."""

from __future__ import annotations

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lowdim.errors import LowdimError

PARALLEL_WRAPPERS = (nn.DataParallel, DistributedDataParallel)


def inner_model(model: nn.Module) -> nn.Module:
    """The model a data-parallel wrapper (or a stack of them) holds; any other module as it is."""
    while isinstance(model, PARALLEL_WRAPPERS):
        model = model.module
    return model


def refuse_adding_through_ddp(given: nn.Module, name: str) -> None:
    """DDP registers the parameters it syncs when it is made: adapter parameters added later would get their
    gradients on each process alone and drift apart, silently. DataParallel copies the module at every call, so
    it sees them."""
    while isinstance(given, PARALLEL_WRAPPERS):
        if isinstance(given, DistributedDataParallel):
            raise LowdimError(f"adapter '{name}': this is a DistributedDataParallel, which syncs only the parameters "
                              f"it saw when it was made: add adapters to the model (model.module) before wrapping "
                              f"it in DDP, then wrap it again")
        given = given.module
