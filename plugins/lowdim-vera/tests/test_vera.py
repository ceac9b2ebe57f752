"""VeRA-specific properties. The shared contract suite in lowdim covers the generic Space rules."""

from __future__ import annotations

import importlib.metadata
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lowdim_vera import VeraConfig, VeraSpace
from torch import nn

import lowdim
from lowdim import functional as F
from lowdim.errors import ConfigError
from lowdim.registry import Registry
from lowdim.spaces.base import LayerSpec

SEEDS = st.integers(min_value=0, max_value=(1 << 63) - 1)
fast = settings(max_examples=40, deadline=None)


@st.composite
def layers(draw: st.DrawFn) -> LayerSpec:
    name = draw(st.sampled_from(["mid.attn1.to_q", "down.0.attn2.to_v", "proj", "a.b.c"]))
    return LayerSpec(name, draw(st.integers(1, 24)), draw(st.integers(1, 24)))


@st.composite
def spaces(draw: st.DrawFn) -> VeraSpace:
    return VeraSpace(rank=draw(st.integers(1, 12)), basis=draw(st.sampled_from(["uniform", "gaussian"])))


def random_params(
    space: VeraSpace, layer: LayerSpec, seed: int, batch: tuple[int, ...] = ()
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(*batch, *shape, generator=generator, dtype=torch.float64)
        for name, shape in space.param_shapes(layer).items()
    }


@fast
@given(spaces(), layers(), SEEDS, st.integers(0, 2**31))
def test_delta_is_diag_b_B_diag_d_A(space: VeraSpace, layer: LayerSpec, seed: int, param_seed: int) -> None:
    buffers = space.make_buffers(layer, seed)
    params = random_params(space, layer, param_seed)
    width = min(space.config.rank, layer.out_features, layer.in_features)
    assert buffers["A"].shape == (width, layer.in_features) and buffers["B"].shape == (layer.out_features, width)
    assert all(t.dtype == torch.float64 and t.device.type == "cpu" for t in buffers.values())
    expected = torch.diag(params["b"]) @ buffers["B"] @ torch.diag(params["d"]) @ buffers["A"]
    torch.testing.assert_close(space.delta(params, buffers), expected)
    x = torch.randn(3, layer.in_features, dtype=torch.float64)
    torch.testing.assert_close(F.lowrank_apply(x, *space.factors(params, buffers)), x @ expected.T)  # the forward


@fast
@given(layers(), SEEDS)
def test_default_init_gives_zero_delta(layer: LayerSpec, seed: int) -> None:
    space = VeraSpace()
    params = space.init_params(layer, torch.Generator().manual_seed(0))
    assert all(t.dtype == torch.float32 for t in params.values())
    buffers = {k: v.float() for k, v in space.make_buffers(layer, seed).items()}
    assert torch.count_nonzero(space.delta(params, buffers)) == 0
    assert torch.all(params["d"] == 0.1)


@fast
@given(spaces(), layers())
def test_trainable_count_and_clamping(space: VeraSpace, layer: LayerSpec) -> None:
    width = min(space.config.rank, layer.out_features, layer.in_features)
    assert space.num_params(layer) == width + layer.out_features
    assert space.trainable_names(layer) == ["d", "b"]
    assert space.rank(layer) == width
    assert (space.describe(layer) is None) == (width == space.config.rank)


@fast
@given(spaces(), layers(), SEEDS, st.text(min_size=1, max_size=12))
def test_buffers_follow_the_layer_seed(space: VeraSpace, layer: LayerSpec, adapter_seed: int, other: str) -> None:
    first = space.make_buffers(layer, F.layer_seed(adapter_seed, layer.name))
    again = space.make_buffers(layer, F.layer_seed(adapter_seed, layer.name))
    assert all(torch.equal(first[k], again[k]) for k in first)
    renamed = LayerSpec(layer.name + other, layer.out_features, layer.in_features)
    moved = space.make_buffers(renamed, F.layer_seed(adapter_seed, renamed.name))
    # A 1x1 layer has one entry per matrix; two seeds could still collide there, so skip it.
    if layer.out_features * layer.in_features > 1:
        assert not torch.equal(first["A"], moved["A"]) and not torch.equal(first["B"], moved["B"])


@fast
@given(spaces(), layers(), SEEDS, st.integers(0, 2**31), st.integers(1, 4))
def test_batched_factors_equal_a_loop(
    space: VeraSpace, layer: LayerSpec, seed: int, param_seed: int, batch: int
) -> None:
    buffers = space.make_buffers(layer, seed)
    params = random_params(space, layer, param_seed, batch=(batch,))
    down, up = space.factors(params, buffers)
    width = space.rank(layer)
    assert down.shape == (batch, width, layer.in_features) and up.shape == (batch, layer.out_features, width)
    for j in range(batch):
        one_down, one_up = space.factors({k: v[j] for k, v in params.items()}, buffers)
        torch.testing.assert_close(down[j], one_down)
        torch.testing.assert_close(up[j], one_up)


@pytest.mark.parametrize("basis", ["uniform", "gaussian"])
@pytest.mark.parametrize("shape", [(1024, 1024), (2048, 1024), (512, 1024)])
def test_basis_scale_keeps_magnitude(basis: str, shape: tuple[int, int]) -> None:
    # Each matrix is scaled by 1/sqrt(its own fan-in): A's by in_features, B's by the rank. Then every output
    # of x @ A.T and of h @ B.T has the RMS of its input, whatever the layer size: a row's energy is 1.
    buffers = VeraSpace(rank=256, basis=basis).make_buffers(LayerSpec("l", *shape), 7)
    gain = 3.0 if basis == "uniform" else 1.0  # the variance of U(-1, 1) is 1/3
    for name in ("A", "B"):
        assert math.isclose(buffers[name].pow(2).sum(1).mean().item() * gain, 1.0, rel_tol=0.05), name


@pytest.mark.parametrize(("basis", "checksum"), [("uniform", "abae01d7bc3a665a"), ("gaussian", "f4210438ecc1b3aa")])
def test_the_bases_are_pinned_so_every_saved_file_keeps_loading(basis: str, checksum: str) -> None:
    # Files keep only a seed; A and B are drawn again, A first. A change here (the draw order, the scale, the
    # distribution) makes every VeRA file saved so far fail to load with a checksum mismatch: a format change.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4))
    adapters = lowdim.inject(model, VeraSpace(rank=4, basis=basis), ["0", "2"], seed=7)
    assert lowdim.files._checksum(adapters.buffers(), adapters.info().layers) == checksum


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"rank": 0}, "0"),
        ({"rank": 2.5}, "2.5"),
        ({"rank": True}, "True"),
        ({"d_init": float("nan")}, "nan"),
        ({"b_init": "x"}, "'x'"),
        ({"d_init": 0.0}, "d_init=0.0"),
        ({"basis": "sobol"}, "'sobol'"),
        ({"alpha": 1.0}, "alpha"),
    ],
)
def test_bad_config_is_named(overrides: dict, named: str) -> None:
    with pytest.raises(ConfigError, match="vera|alpha") as error:
        VeraSpace(**overrides)
    assert named in str(error.value)


def test_config_round_trips_through_a_dict() -> None:
    config = VeraConfig(rank=16, d_init=0.5, b_init=0.0, basis="gaussian")
    assert VeraConfig.from_dict(config.to_dict()) == config
    assert set(VeraConfig.help()) == {"rank", "d_init", "b_init", "basis"}


def test_entry_point_is_discoverable() -> None:
    points = {ep.name: ep for ep in importlib.metadata.entry_points(group="lowdim")}
    assert "vera" in points
    assert points["vera"].load().register_spaces is not None
    assert "vera" in Registry.from_plugins(load_entry_points=True).spaces


def test_inject_forward_and_file_round_trip(tmp_path) -> None:
    import lowdim_vera

    registry = Registry.from_plugins(["lowdim.spaces.builtin", lowdim_vera])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6))
    x = torch.randn(5, 12)
    before = model(x)
    with lowdim.use_registry(registry):
        adapters = lowdim.inject(model, lowdim.get_space("vera", rank=4), ["0", "2"], seed=3)
        torch.testing.assert_close(model(x), before)
        with torch.no_grad():
            for param in adapters.parameters("default"):
                param.normal_()
        delta = adapters.delta("default", "0")
        torch.testing.assert_close(model[0](x), model[0].base_layer(x) + x @ delta.T)
        path = lowdim.save_adapter(tmp_path / "v.safetensors", model)
        stored = lowdim.read_adapter(path)
        assert stored.num_params == (4 + 10) + (4 + 6)
        for layer, (down, up) in stored.lora_factors().items():
            torch.testing.assert_close(up @ down, adapters.delta("default", layer))
