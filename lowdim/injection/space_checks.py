"""A space's own mistakes, caught where it is first used on a layer and blamed on the space.

Without these, a plugin space whose ``init_params`` disagrees with ``param_shapes`` failed only when a
saved file was loaded ("more values than the layers need"), one whose ``make_buffers`` drew from the
global RNG was reported as a platform difference on reload, and swapped factors were a bare matmul error
in the first forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.spaces.base import LayerSpec, Space

Tensors = dict[str, Tensor]


def _fail(space: Space, layer: LayerSpec, problem: str) -> NoReturn:
    raise LowdimError(f"space '{space.name}' on layer {layer.name} ({layer.out_features}x{layer.in_features}): "
                      f"{problem} (a bug in the space's code, not in the model or the options)")


def check_space_on_layer(space: Space, layer: LayerSpec, params: Tensors, buffers: Tensors) -> None:
    """``init_params`` matches ``param_shapes``, ``trainable_names`` names params, and ``factors`` has LoRA's shapes."""
    shapes = _checked_shapes(space, layer)
    _check_param_types(space, layer, params, shapes)
    _check_buffer_types(space, layer, buffers)
    made = {name: tuple(value.shape) for name, value in params.items()}
    if made != {name: tuple(shape) for name, shape in shapes.items()}:
        _fail(space, layer, f"init_params gave {made}, but param_shapes says {dict(shapes)}")
    for name, value in params.items():
        if value.dtype not in _param_dtypes():
            _fail(space, layer, f"init_params gave {name} as {value.dtype}; {_param_dtype_advice()}, and lowdim "
                                f"casts them with the model")
    unknown = sorted(set(space.trainable_names(layer)) - set(params))
    if unknown:
        _fail(space, layer, f"trainable_names lists {', '.join(unknown)}, which init_params does not make")
    with torch.no_grad():  # one layer's real factors: a plugin's math need not run on the meta device
        made_factors = space.factors(params, {k: v.to(torch.float32) for k, v in buffers.items()})
    down, up = _checked_pair(space, layer, made_factors)
    if problem := factor_shape_problem(down, up, layer):
        _fail(space, layer, problem)
    width = down.shape[-2]
    if width != space.rank(layer):  # the stack's rank sum and the contract suite trust rank()
        _fail(space, layer, f"rank() says {space.rank(layer)} but factors are {width} wide (down "
                            f"{tuple(down.shape)}); rank() must be the factors' width: drop the override, or "
                            f"return what factors makes")


def factor_shape_problem(down: torch.Tensor, up: torch.Tensor, layer: LayerSpec) -> str | None:
    """What is wrong with one sample's factors on ``layer``, each wrong factor named with its shape and the shape
    LoRA's form needs (down (r, in), up (out, r)); None when they fit."""
    inputs, outputs = layer.in_features, layer.out_features
    got = {"down": tuple(down.shape), "up": tuple(up.shape)}
    needs = {"down": ((None, inputs), f"(r, {inputs}): r rows by the layer's {inputs} inputs"),
             "up": ((outputs, None), f"({outputs}, r): the layer's {outputs} outputs by r columns")}
    wrong = {name: _one_factor(got[name], *needs[name]) for name in got}
    if not any(wrong.values()):
        if got["down"][0] == got["up"][1]:
            return None
        return (f"factors gave down {got['down']} and up {got['up']}: down is {got['down'][0]} rows and up "
                f"{got['up'][1]} columns, where both must be r, the factors' width (ΔW = up @ down)")
    said = [f"{name} {got[name]}, which must be {problem}" for name, problem in wrong.items() if problem]
    right = [f"{name} {got[name]} is right" for name, problem in wrong.items() if not problem]
    return (f"factors gave {' and '.join(said)}{'; ' if right else ''}{', '.join(right)} "
            f"(LoRA's form: ΔW = up @ down, down (r, in) and up (out, r))")


def _one_factor(shape: tuple[int, ...], fixed: tuple[int | None, int | None], needed: str) -> str | None:
    """None when ``shape`` is 2-D with the layer's size where ``fixed`` has one; else what it must be."""
    if len(shape) == 2 and all(want is None or size == want for size, want in zip(shape, fixed, strict=True)):
        return None
    flipped = len(shape) == 2 and all(want is None or size == want for size, want in zip(shape, fixed[::-1],
                                                                                           strict=True))
    return needed + (" (it looks transposed: swap its two dimensions)" if flipped else "")


# A wrong type (a list for a dict, DeltaW for (down, up)) is the commonest first mistake in a space; unchecked, it
# was an AttributeError or "too many values to unpack" from the lines below, naming neither the space nor the rule.
def _checked_shapes(space: Space, layer: LayerSpec) -> Mapping[str, tuple[int, ...]]:
    shapes = space.param_shapes(layer)
    if not isinstance(shapes, Mapping):
        _fail(space, layer, f"param_shapes returned {_kind(shapes)}; it must return a dict of shapes by param name")
    for name, shape in shapes.items():
        if not (isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(size, int) for size in shape)):
            _fail(space, layer, f"param_shapes gave {name} as {shape!r}; each shape must be a tuple of ints")
    return shapes


def _check_param_types(space: Space, layer: LayerSpec, params: object, shapes: Mapping[str, object]) -> None:
    rule = f"init_params must return a dict of tensors by the names param_shapes gives ({', '.join(shapes)})"
    if not isinstance(params, Mapping):
        _fail(space, layer, f"init_params returned {_kind(params)}; {rule}")
    for name, value in params.items():
        if not isinstance(value, Tensor):
            _fail(space, layer, f"init_params gave {name} as {_kind(value)}; {rule}")


def _check_buffer_types(space: Space, layer: LayerSpec, buffers: object) -> None:
    rule = "it must return a dict of tensors by name ({} for none)"
    if not isinstance(buffers, Mapping):
        _fail(space, layer, f"make_buffers returned {_kind(buffers)}; {rule}")
    for name, value in buffers.items():
        if not isinstance(value, Tensor):
            _fail(space, layer, f"make_buffers gave {name} as {_kind(value)}; {rule}")


def _checked_pair(space: Space, layer: LayerSpec, factors: object) -> tuple[Tensor, Tensor]:
    if isinstance(factors, (tuple, list)) and len(factors) == 2 and all(isinstance(f, Tensor) for f in factors):
        return factors[0], factors[1]
    if isinstance(factors, (tuple, list)):
        got = f"a {type(factors).__name__} of {len(factors)} ({', '.join(type(f).__name__ for f in factors)})"
    else:
        got = _kind(factors)
    _fail(space, layer, f"factors returned {got}; it must return (down, up), two tensors of shapes "
                        f"(r, {layer.in_features}) and ({layer.out_features}, r)")


def _kind(value: object) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _param_dtypes() -> set[torch.dtype]:
    # An adapter is made in fp32, or in the default dtype a user chose (torch.set_default_dtype(torch.float64),
    # which the built-in spaces follow), whatever the model's dtype; it follows the model's cast later. A space
    # that asks for fp64 itself under the fp32 default trained silently in fp64, slow on GPUs and unsupported on
    # some backends.
    return {torch.float32, torch.get_default_dtype()}


def _param_dtype_advice() -> str:
    default = torch.get_default_dtype()
    if default == torch.float32:
        return "params must be float32 (torch.zeros(...) without a dtype, or .float())"
    return (f"params must be float32 or torch's default dtype, now {default} (torch.zeros(...) without a dtype, "
            f"or .float())")


def check_batched_factors(space: Space, layer: LayerSpec, params: Tensors, buffers: Tensors) -> None:
    """``factors`` on a batch of K adapters' params (a leading dimension; buffers as they are) gives each sample
    the factors that sample gives alone: per-sample adapters (``override``, a hypernetwork's predictions,
    ``train --subjects``) pass them so, and factors that dropped the dimension failed deep in a forward, or
    silently used one sample for all. The batch is ``params`` and a second adapter near them (``_nearby``), so
    that a space which reduces over the batch, or indexes its first sample, gives sample 1 other values. A
    sample whose factors alone are not finite (params outside the space's domain) is checked by shape only.
    The contract suite runs it; one adapter alone (``inject``, ``train``) works without it, and is not refused."""
    samples = [params, _nearby(params)]
    stacked = {name: torch.stack([sample[name] for sample in samples]) for name in params}
    batch = len(samples)
    buffers = {k: v.to(torch.float32) for k, v in buffers.items()}
    with torch.no_grad():
        alone = [space.factors(sample, buffers) for sample in samples]
        try:
            down, up = space.factors(stacked, buffers)
        except Exception as error:  # noqa: BLE001  (any failure here is the space's)
            _fail(space, layer, f"factors fails on a batch of {batch} adapters, params of shape ({batch}, *shape) "
                                f"({type(error).__name__}: {error}); keep the leading batch dimension")
    expected = [(batch, *alone[0][0].shape), (batch, *alone[0][1].shape)]
    if [tuple(down.shape), tuple(up.shape)] != expected:
        _fail(space, layer, f"factors on a batch of {batch} adapters gave down {tuple(down.shape)} and up "
                            f"{tuple(up.shape)} instead of {batch} stacked factors {expected[0]} and {expected[1]}; "
                            f"keep the leading batch dimension of the params (index with ..., expand the buffers)")
    for index, (own_down, own_up) in enumerate(alone):
        if not (bool(own_down.isfinite().all()) and bool(own_up.isfinite().all())):
            continue  # NaN is never equal to itself: nothing to compare values with
        if not (_alike(down[index], own_down) and _alike(up[index], own_up)):
            _fail(space, layer, f"factors on a batch of {batch} different adapters gave sample {index} other factors "
                                f"than factors on sample {index} alone (down off by up to "
                                f"{_largest_gap(down[index], own_down):.3g}, up by up to "
                                f"{_largest_gap(up[index], own_up):.3g}); compute each sample from its own params "
                                f"(index with ..., broadcast over the leading dimensions), never from the first "
                                f"sample's or the whole batch's values")


def _nearby(params: Tensors) -> Tensors:
    """Other params close to ``params``, relative to each tensor's scale: random ones fell outside a space's
    domain (``sqrt``, ``log`` of a gain made as ones) and made a correct space fail with a torch error."""
    generator = torch.Generator().manual_seed(0)
    nearby = {}
    for name, value in params.items():
        scale = float(value.abs().max().nan_to_num(0.0, 0.0, 0.0)) if value.numel() else 0.0
        scale = scale or 1.0  # an all-zero init (LoRA's up) still gets a second sample that differs
        wobble, shift = (torch.randn(value.shape, generator=generator, dtype=value.dtype) for _ in range(2))
        nearby[name] = value * (1 + 0.1 * wobble) + 0.1 * scale * shift
    return nearby


def _largest_gap(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def check_stacked_factors(space: Space, layer: LayerSpec, params: Tensors, buffers: Tensors) -> None:
    """A space that claims ``stacks_layers`` gives two stacked copies of a layer two copies of its factors: a
    training step batches same-shape layers on that claim, and a wrong one failed deep inside it."""
    if not space.stacks_layers():
        return

    def twice(tensors: Tensors) -> Tensors:
        return {name: torch.stack([value, value]) for name, value in tensors.items()}

    buffers = {k: v.to(torch.float32) for k, v in buffers.items()}
    with torch.no_grad():
        single = space.factors(params, buffers)
        try:
            down, up = space.factors(twice(params), twice(buffers))
        except Exception as error:  # noqa: BLE001  (any failure here is the claim's)
            _fail(space, layer, f"stacks_layers() is True, but factors fails on two stacked layers "
                                f"({type(error).__name__}: {error}); return False, or keep the leading dimension")
        expected = [(2, *single[0].shape), (2, *single[1].shape)]
        if [tuple(down.shape), tuple(up.shape)] != expected or not (
                _alike(down[1], single[0]) and _alike(up[1], single[1])):
            _fail(space, layer, f"stacks_layers() is True, but factors of two stacked layers gave down "
                                f"{tuple(down.shape)} and up {tuple(up.shape)}, not each layer's own factors "
                                f"{expected[0]} and {expected[1]}; return False, or keep the leading dimension")


def _alike(stacked: Tensor, alone: Tensor) -> bool:
    # A batched product rounds otherwise than a single one (more so in fp16/bf16), and entries near zero fail a
    # fixed atol: relative to the factor's scale. A wrong claim gives other shapes or other values, not rounding.
    # NaN entries (factors outside a space's domain) must match as NaN and are left out of the scale.
    stacked, alone = stacked.float(), alone.float()
    scale = float(alone.nan_to_num(0.0, 0.0, 0.0).abs().max().clamp_min(1e-12)) if alone.numel() else 1e-12
    return torch.allclose(stacked, alone, rtol=1e-2, atol=1e-3 * scale, equal_nan=True)


def check_buffers_come_from_the_seed(space: Space, layer: LayerSpec, buffers: Tensors, seed: int) -> None:
    """Frozen state drawn again from the same seed is the same: files keep only the seed, not the tensors."""
    again = space.make_buffers(layer, seed)
    if set(again) != set(buffers) or any(not torch.equal(again[k], buffers[k]) for k in buffers):
        _fail(space, layer, "make_buffers gave different tensors for the same seed; draw frozen state from "
                            "torch.Generator().manual_seed(seed) alone, or a saved adapter cannot be loaded back")
