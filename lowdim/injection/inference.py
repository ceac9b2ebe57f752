"""Adapter tensors are normal tensors, whatever autograd mode the caller is in.

Tensors made under ``torch.inference_mode()`` have no version counter and refuse in-place writes outside it.
A notebook cell wrapped in inference mode that loads an adapter would otherwise leave the model unusable
in every later no-grad forward (the kept factors are keyed by version counters), in training (an optimizer
step writes in place) and in ``load_state_dict``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

Function = TypeVar("Function", bound=Callable)


@contextlib.contextmanager
def normal_tensors() -> Iterator[None]:
    """Within, tensors are made as outside inference mode. Leaving inference mode turns gradients on, so
    they are turned off again: the caller asked for none."""
    if not torch.is_inference_mode_enabled():
        yield
        return
    with torch.inference_mode(False), torch.no_grad():
        yield


def makes_normal_tensors(function: Function) -> Function:
    """``function`` run inside ``normal_tensors``."""
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        with normal_tensors():
            return function(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
