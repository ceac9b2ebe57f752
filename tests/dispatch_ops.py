"""Counting the operations a piece of torch code dispatches, views left out: what a GPU would launch."""

from __future__ import annotations

import collections

from torch.utils._python_dispatch import TorchDispatchMode

VIEWS = {"view", "_unsafe_view", "t", "transpose", "permute", "reshape", "expand", "detach", "alias", "unsqueeze",
         "unbind", "select", "squeeze"}


class Operations(TorchDispatchMode):
    """``with Operations() as seen: ...``, then ``seen.ops``: operation name -> how often it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name not in VIEWS:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))
