"""Models wrapped for data parallelism (``nn.DataParallel``, ``DistributedDataParallel``) or by ``torch.compile``
(an ``OptimizedModule`` holding the model as ``_orig_mod``): the adapters live on the model inside, as accelerate's
``unwrap_model`` sees it, so a wrapper and the model it holds are one model to lowdim and a file names the model's
own layers, never ``module.``- or ``_orig_mod.``-prefixed ones (a file an older lowdim saved through a data-parallel
wrapper with ``module.`` names loads all the same: ``lowdim.file_fit.without_wrapper_prefix``)."""

from __future__ import annotations

import sys
import warnings
import weakref

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lowdim.errors import LowdimError
from lowdim.injection.select import user_stacklevel

PARALLEL_WRAPPERS = (nn.DataParallel, DistributedDataParallel)


# A weak reference to the DDP lowdim last saw holding a model, set on that model: adding to it through
# ``ddp.module`` warns while that DDP is alive and still holds it. Weak, so a DDP deleted (or one the user replaced
# by wrapping the model anew, as the refusal says) warns of nothing.
SEEN_IN_DDP = "_lowdim_seen_in_ddp"


def _held(model: nn.Module) -> nn.Module | None:
    """The module a data-parallel or compile wrapper holds; None for any other module."""
    if isinstance(model, PARALLEL_WRAPPERS):
        return model.module
    # torch.compile's wrapper: its class exists only once dynamo is imported, which compiling does, so a model
    # never compiled costs no dynamo import here.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    optimized = getattr(eval_frame, "OptimizedModule", None)
    return model._orig_mod if optimized is not None and isinstance(model, optimized) else None


def inner_model(model: nn.Module) -> nn.Module:
    """The model a data-parallel or compile wrapper (or a stack of them, in any order) holds; any other module as it
    is. A model found inside a DDP keeps a weak reference to it (``SEEN_IN_DDP``)."""
    ddp = None
    while (held := _held(model)) is not None:
        if ddp is None and isinstance(model, DistributedDataParallel):
            ddp = model
        model = held
    if ddp is not None:
        object.__setattr__(model, SEEN_IN_DDP, weakref.ref(ddp))
    return model


def _unwrapped(model: nn.Module) -> nn.Module:
    while (held := _held(model)) is not None:
        model = held
    return model


def ddp_holding(model: nn.Module) -> DistributedDataParallel | None:
    """The DDP lowdim saw holding ``model``, while it is alive and holds it still; else None."""
    seen = getattr(model, SEEN_IN_DDP, None)
    ddp = seen() if isinstance(seen, weakref.ref) else None
    return ddp if ddp is not None and _unwrapped(ddp) is model else None


def refuse_adding_through_ddp(given: nn.Module, name: str) -> None:
    """DDP registers the parameters it syncs when it is made: adapter parameters added later (by ``add``, or by
    ``load_adapter``, which adds) would get their gradients on each process alone and drift apart, silently.
    Through the DDP that is refused; through ``ddp.module`` of a DDP lowdim has seen, it warns (a frozen adapter
    loaded to evaluate has no gradient to sync, so that is not refused). DataParallel copies the module at every
    call, so it sees them."""
    model = given
    while (held := _held(model)) is not None:  # a compiled DDP, torch.compile(DDP(model)), too
        if isinstance(model, DistributedDataParallel):
            # Refused, so not a look through it: the user, doing as this says, adds to the model and wraps it anew.
            object.__setattr__(_unwrapped(model), SEEN_IN_DDP, None)
            raise LowdimError(f"adapter '{name}': this is a DistributedDataParallel, which syncs only the parameters "
                              f"it saw when it was made, so an adapter added or loaded through it would train apart "
                              f"on each process: add or load adapters before `DistributedDataParallel(model)` is "
                              f"made, then wrap the model; adding through `ddp.module` afterwards has the same "
                              f"problem (to evaluate alone, with no training, load into `ddp.module`: nothing needs "
                              f"syncing)")
        model = held
    if ddp_holding(model) is not None:
        warnings.warn(f"adapter '{name}' was added to a model a DistributedDataParallel made before this add still "
                      f"wraps: DDP syncs only the parameters it saw when it was made, so if this adapter trains "
                      f"through that DDP, it trains apart on each process; add adapters before "
                      f"`DistributedDataParallel(model)` is made (to evaluate alone, nothing needs syncing)",
                      stacklevel=user_stacklevel())
