"""Models wrapped for data parallelism (``nn.DataParallel``, ``DistributedDataParallel``): the adapters live on
the model inside, as accelerate's ``unwrap_model`` sees it, so a wrapper and its ``.module`` are one model to lowdim
and a file names the model's own layers, never ``module.``-prefixed ones (a file an older lowdim saved through one
with those names loads all the same: ``lowdim.file_fit.without_wrapper_prefix``)."""

from __future__ import annotations

import warnings

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lowdim.errors import LowdimError
from lowdim.inject.select import user_stacklevel

PARALLEL_WRAPPERS = (nn.DataParallel, DistributedDataParallel)


# Set on a model lowdim has seen inside a DDP: adding to it later (through ``ddp.module``) warns.
SEEN_IN_DDP = "_lowdim_seen_in_ddp"


def inner_model(model: nn.Module) -> nn.Module:
    """The model a data-parallel wrapper (or a stack of them) holds; any other module as it is. A model found inside
    a DDP is marked so (``SEEN_IN_DDP``)."""
    in_ddp = False
    while isinstance(model, PARALLEL_WRAPPERS):
        in_ddp = in_ddp or isinstance(model, DistributedDataParallel)
        model = model.module
    if in_ddp:
        object.__setattr__(model, SEEN_IN_DDP, True)
    return model


def refuse_adding_through_ddp(given: nn.Module, name: str) -> None:
    """DDP registers the parameters it syncs when it is made: adapter parameters added later (by ``add``, or by
    ``load_adapter``, which adds) would get their gradients on each process alone and drift apart, silently.
    Through the DDP that is refused; through ``ddp.module`` of a DDP lowdim has seen, it warns (a frozen adapter
    loaded to evaluate has no gradient to sync, so that is not refused). DataParallel copies the module at every
    call, so it sees them."""
    model = given
    while isinstance(model, PARALLEL_WRAPPERS):
        if isinstance(model, DistributedDataParallel):
            raise LowdimError(f"adapter '{name}': this is a DistributedDataParallel, which syncs only the parameters "
                              f"it saw when it was made, so an adapter added or loaded through it would train apart "
                              f"on each process: add or load adapters before `DistributedDataParallel(model)` is "
                              f"made, then wrap the model; adding through `ddp.module` afterwards has the same "
                              f"problem (to evaluate alone, with no training, load into `ddp.module`: nothing needs "
                              f"syncing)")
        model = model.module
    if getattr(model, SEEN_IN_DDP, False):
        warnings.warn(f"adapter '{name}' was added to a model a DistributedDataParallel already wraps: DDP syncs only "
                      f"the parameters it saw when it was made, so if this adapter trains, it trains apart on each "
                      f"process; add adapters before `DistributedDataParallel(model)` is made (to evaluate alone, "
                      f"nothing needs syncing)", stacklevel=user_stacklevel())
