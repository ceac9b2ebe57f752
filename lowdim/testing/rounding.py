"""How far the contract lets a float computation be from the space's math: rounding, never a wrong formula.

Two fp32 computations of one output or gradient, summed in different orders, differ by rounding that grows with
the terms they add, not with the result: LiDB at ``aux_scale=3`` has gradients in the thousands summed from far
larger terms, so a fixed relative tolerance between two fp32 results failed correct spaces now and then (review
BZ, finding 1). Here each result is compared with the exact value, the space's formula in fp64, and allowed
``UNITS`` rounding units of ``eps(dtype) · spread``. The spread of a value is the root of the sum of its terms'
squares (with random signs a product's rounding grows as √k·eps·‖a‖‖b‖), the error its inputs carry in
included: the same math on every operand's square. Over 60,000 draws of every first-party space a correct one
stayed under 30 units; a missing scale was off by 27,000 units or more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

LayerTensors = dict[str, dict[str, Tensor]]
# (params, None) -> the value; (params, the params squared) -> the value's spread squared, by the same math.
Forward = Callable[[LayerTensors, "LayerTensors | None"], Tensor]

UNITS = 512.0
# fp16 and bf16 outputs (never gradients) are allowed fewer: a correct space stayed under 5 over 10,000 draws,
# where a bound relative to the largest output failed a correct stack (contract_cases.STACK_HALF_ROUNDING).
HALF_UNITS = 32.0


@dataclass
class Exact:
    """A forward and its gradients in fp64 (``value``, ``grads``) and the spreads their rounding grows with."""

    value: Tensor
    grads: LayerTensors
    value_spread: Tensor
    grad_spreads: LayerTensors


def exact64(forward: Forward, params: LayerTensors, loss: Callable[[Tensor], Tensor] | None = None) -> Exact:
    """``forward`` of ``params`` in fp64, the gradients of ``loss`` of it (none without a loss), and the spreads
    of both."""
    exact = {layer: {k: v.detach().double().requires_grad_(loss is not None) for k, v in p.items()}
             for layer, p in params.items()}
    value = forward(exact, None)
    values = {layer: {k: v.detach() for k, v in p.items()} for layer, p in exact.items()}
    squares = {layer: {k: v.square().requires_grad_(loss is not None) for k, v in p.items()}
               for layer, p in values.items()}
    value_squares = forward(values, squares)
    spread = value_squares.detach().sqrt()
    if loss is None:
        return Exact(value.detach(), {}, spread, {})
    loss(value).backward()
    # A gradient's terms carry the loss's slope, and the error in the value moves that slope: both, squared.
    slope, moved = _slope(loss, value.detach()), _slope(loss, value.detach() + spread)
    (value_squares * (slope.square() + (moved - slope).square())).sum().backward()
    return Exact(value.detach(), _grads(exact, lambda g: g), spread, _grads(squares, torch.sqrt))


def _slope(loss: Callable[[Tensor], Tensor], at: Tensor) -> Tensor:
    point = at.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(point), point)
    return grad


def _grads(leaves: LayerTensors, then: Callable[[Tensor], Tensor]) -> LayerTensors:
    return {layer: {k: then(v.grad) if v.grad is not None else torch.zeros_like(v) for k, v in p.items()}
            for layer, p in leaves.items()}


def units_off(got: Tensor, exact: Tensor, spread: Tensor, dtype: torch.dtype) -> float:
    """How far ``got`` is from ``exact``, in rounding units of ``dtype``: at most ``UNITS`` is rounding."""
    if got.shape != exact.shape:
        return float("inf")
    if not got.numel():
        return 0.0
    gap = float((got.detach().double() - exact).abs().max())
    unit = torch.finfo(dtype).eps * float(spread.max())
    return gap / unit if unit > 0 else (0.0 if gap == 0 else float("inf"))  # NaN stays NaN: it fails <= UNITS


def tanh_squares(pre: Tensor, pre_squares: Tensor) -> Tensor:
    """The squared spread of tanh(pre) from its input's exact value and squared spread: tanh² plus the error the
    input carries in, tanh'(pre)²·spread². Gradients through it also carry the error of tanh' itself, which
    autograd takes as 1 − tanh²: rounding in tanh (eps·tanh², which fp32 keeps where tanh' is near 0) and the
    input's error moving it."""
    t = torch.tanh(pre.detach())
    slope = 1 - t * t
    value = t * t + slope * slope * pre_squares
    through = (slope.square() + 4 * t.square() * slope.square() * pre_squares + 4 * t**4).detach()
    return pre_squares * through + (value - pre_squares * through).detach()
