"""Where a fresh adapter starts: every init option of LoRA and LiDB (alone and in a stack) is reproducible from the
adapter's seed alone and starts its random factors with the spread the docs give (``init_std``; LiDB's default
1/sqrt(b)). Textual Inversion's vectors start at zero whatever its options: the contract suite covers that.

The contract suite draws its configs from ``sample_config``, which draws every init option too, so the contract's
``test_shapes_counts_and_reproducible_init`` sees each branch (its ``test_default_init_leaves_model_output_unchanged``
puts ``init`` back to its default itself); the checks here add the spread and every option on fixed sizes.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lowdim
from lowdim.spaces import lidb, lora, stack
from lowdim.spaces.base import Space

INITS = lora.INITS
# None: the option left at its default (LoRA's 0.02, LiDB's 1/sqrt(b)).
STDS = [None, 0.02, 0.5]


def options(init: str, init_std: float | None) -> dict[str, Any]:
    return {"init": init, **({} if init_std is None else {"init_std": init_std})}


def space_with(name: str, init: str, init_std: float | None, **config: Any) -> Space:
    """``name`` with ``init`` and ``init_std``; a stack gets them on both its components (LiDB frozen, LoRA trained,
    as relax_rank builds it)."""
    if name != "stack":
        return lowdim.get_space(name, **config, **options(init, init_std))
    components = [{"space": part, "config": options(init, init_std)} for part in ("lidb", "lora")]
    return lowdim.get_space("stack", components=components)


def started(space: Space, layer: lowdim.LayerSpec, seed: int, global_seed: int) -> dict[str, torch.Tensor]:
    """init_params from an adapter's per-layer generator, with torch's global RNG at ``global_seed``."""
    torch.manual_seed(global_seed)  # an init that reads the global RNG then differs between two calls
    return space.init_params(layer, torch.Generator().manual_seed(seed))


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["lora", "lidb", "stack"]), init=st.sampled_from(INITS),
       init_std=st.sampled_from(STDS), out=st.integers(1, 24), inputs=st.integers(1, 24),
       seed=st.integers(0, 2**31 - 2))
def test_every_init_starts_from_the_seed_alone(name, init, init_std, out, inputs, seed):
    space, layer = space_with(name, init, init_std), lowdim.LayerSpec("blk.0.q", out, inputs)
    first, again = started(space, layer, seed, global_seed=1), started(space, layer, seed, global_seed=2)
    differ = sorted(k for k in first if not torch.equal(first[k], again[k]))
    assert not differ, f"{name} init={init}: the same seed started {', '.join(differ)} elsewhere"
    other = started(space, layer, seed + 1, global_seed=1)
    drawn = [k for k, v in first.items() if v.any()]
    assert drawn and all(not torch.equal(first[k], other[k]) for k in drawn), (
        f"{name} init={init}: another seed started {drawn} at the same values")


def test_both_spaces_offer_the_inits_checked_here():
    assert lora.INITS == lidb.INITS == ("zero", "gaussian"), "a new init option needs its cases in this file"


def spread_cases() -> list[tuple[str, str, float | None]]:
    return [(name, init, std) for name in ("lora", "lidb") for init in INITS for std in STDS]


@pytest.mark.parametrize(("name", "init", "init_std"), spread_cases())
def test_trainable_factors_start_with_the_documented_spread(name, init, init_std):
    """docs/spaces.md: LoRA's down (and up, with init='gaussian') ~ N(0, init_std²), up = 0 otherwise; LiDB's
    B_train (and A_train, with 'gaussian') ~ N(0, init_std²), init_std by default 1/sqrt(b), A_train = 0 otherwise."""
    # 800 numbers or more per factor: 15% is 6 standard errors of the std, 4 of the mean. b = 100 of in = a = 400:
    # a std from in or a would be 2 times off, and 1/b instead of 1/sqrt(b) 10 times.
    layer = lowdim.LayerSpec("x", 400, 400)
    config = {"rank": 8} if name == "lora" else {"a": 400, "b": 100, "rank": 8}
    space = space_with(name, init, init_std, **config)
    params = space.init_params(layer, torch.Generator().manual_seed(0))
    always, gaussian_only = ("down", "up") if name == "lora" else ("B_train", "A_train")
    default = 0.02 if name == "lora" else 100 ** -0.5
    std = default if init_std is None else init_std
    for factor in (always, gaussian_only) if init == "gaussian" else (always,):
        values = params[factor]
        assert values.std().item() == pytest.approx(std, rel=0.15), f"{name} {factor}"
        assert abs(values.mean().item()) < 0.15 * std, f"{name} {factor}"
    if init == "zero":
        assert not params[gaussian_only].any(), f"{name} init=zero: {gaussian_only} must start at 0 (ΔW = 0)"


def drawn_inits(name: str) -> set[tuple[str, str]]:
    """(init, init_std) of every LoRA and LiDB config that ``sample_config`` of ``name`` draws over 200 cases (a
    stack's: its components'), on layers of 1 to 24 as the contract draws them."""
    space_class = {"lora": lora.LoraSpace, "lidb": lidb.LidbSpace, "stack": stack.StackSpace}[name]
    drawn = set()
    for draw in range(200):
        rng = random.Random(draw)
        layer = lowdim.LayerSpec("blk.0.q", rng.randint(1, 24), rng.randint(1, 24))
        options = space_class.sample_config(rng, layer).to_dict()
        for config in [c["config"] for c in options["components"]] if name == "stack" else [options]:
            drawn.add((config["init"], repr(config["init_std"])))
    return drawn


@pytest.mark.parametrize("name", ["lora", "lidb", "stack"])
def test_the_contract_draws_every_init_and_more_than_one_spread(name):
    """Review BZ, finding 2: LiDB's gaussian init drew from torch's global RNG and the contract's reproducibility
    property passed it, since ``sample_config`` only ever drew init='zero'."""
    drawn = drawn_inits(name)
    assert {init for init, _ in drawn} == set(INITS), f"{name}: sample_config drew init only from {drawn}"
    assert len({std for _, std in drawn}) > 1, f"{name}: sample_config drew one init_std alone: {drawn}"
