"""A model built on the meta device, injected, then loaded with ``load_state_dict(sd, assign=True)`` (the big-model
route of accelerate and transformers) computes what the saved model did: the frozen bases are no state dict entry,
so the load makes them again from the seed on the device the trained params came to. Bases left on meta beside
real params (tensors set one by one, never through a load) are refused in one line naming the layer: they used to
run as whatever memory was there, a different output on every call and no error."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.errors import LowdimError

SPACES: dict[str, dict] = {
    "lidb": dict(a=4, b=4, init="gaussian"),
    "lora": dict(init="gaussian"),
    "vera": dict(b_init=0.5, rank=4),
}


def space_params():
    for name in SPACES:
        marks = [pytest.mark.skipif(not _installed("lowdim_vera"), reason="lowdim-vera not installed")] \
            if name == "vera" else []
        yield pytest.param(name, marks=marks, id=name)


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def mlp(width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 2))


def encoder(width: int = 8) -> nn.Module:
    layer = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


MODELS: dict[str, tuple[Callable[[int], nn.Module], Callable[[int], torch.Tensor]]] = {
    "mlp": (mlp, lambda width: torch.randn(3, width)),
    "encoder": (encoder, lambda width: torch.randn(2, 5, width)),
}


def injected(build: Callable[[int], nn.Module], space: str, width: int, seed: int, meta: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    with torch.device("meta" if meta else "cpu"):  # the model only: inject outside the context, as the idiom goes
        model = build(width).eval()
    lowdim.inject(model, lowdim.get_space(space, **SPACES[space]), ["*"], seed=seed)
    return model


def trained(build: Callable[[int], nn.Module], space: str, width: int, seed: int) -> nn.Module:
    model = injected(build, space, width, seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # a trained adapter, so that a wrong or empty basis shows in the output
                param.normal_(0, 0.5)
    return model


def assign_loaded(build, space: str, width: int, seed: int, state: dict) -> nn.Module:
    model = injected(build, space, width, seed, meta=True)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def assert_computes_as(model: nn.Module, original: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = original(x)
        for _ in range(2):  # uninitialised memory gave another output on every call
            assert (model(x) - expected).abs().max().item() <= 1e-6


@pytest.mark.filterwarnings("ignore:targets .*MultiheadAttention")
@pytest.mark.parametrize("space", list(space_params()))
@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("records", [True, False], ids=["state-dict", "without-lowdim-records"])
def test_assign_load_into_a_meta_built_model_computes_what_the_original_did(space, kind, records):
    build, inputs = MODELS[kind]
    original = trained(build, space, 8, seed=3)
    state = {key: value.clone() for key, value in original.state_dict().items() if records or "lowdim_" not in key}
    model = assign_loaded(build, space, 8, 3, state)
    x = inputs(8)
    assert_computes_as(model, original, x)
    assert not any(tensor.is_meta for tensor in model.state_dict().values())
    again = injected(build, space, 8, seed=3)  # what the loaded model saves loads where the original's would
    again.load_state_dict(model.state_dict(), strict=True)
    assert_computes_as(again, original, x)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), width=st.integers(2, 12), space=st.sampled_from(["lidb", "lora"]))
def test_assign_load_matches_the_original_for_any_seed_and_width(seed, width, space):
    original = trained(mlp, space, width, seed)
    model = assign_loaded(mlp, space, width, seed, original.state_dict())
    assert_computes_as(model, original, torch.randn(4, width))


def test_assign_load_of_a_state_dict_from_another_seed_is_refused():
    original = trained(mlp, "lidb", 8, seed=3)
    with pytest.raises(LowdimError, match="frozen bases differ"):
        assign_loaded(mlp, "lidb", 8, 4, original.state_dict())


def set_one_by_one(model: nn.Module, state: dict) -> None:
    """What accelerate's ``set_module_tensor_to_device`` does: each tensor set in place of the meta one, no load."""
    for key, value in state.items():
        owner, _, name = key.rpartition(".")
        module = model.get_submodule(owner)
        if name in module._parameters:
            old = module._parameters[name]
            module._parameters[name] = nn.Parameter(value.clone(), requires_grad=old.requires_grad)
        else:
            module._buffers[name] = value.clone()


@pytest.mark.parametrize("space", [name for name in list(space_params()) if name.id != "lora"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_a_forward_with_bases_left_on_meta_is_refused_naming_the_layer(space, grad):
    original = trained(mlp, space, 8, seed=3)
    model = injected(mlp, space, 8, seed=3, meta=True)
    set_one_by_one(model, original.state_dict())
    with torch.set_grad_enabled(grad), pytest.raises(LowdimError, match=r"layer 0\b.*meta.*to_empty") as caught:
        model(torch.randn(3, 8))
    assert "\n" not in str(caught.value)


def test_a_model_wholly_on_meta_still_traces_shapes():
    model = injected(mlp, "lidb", 8, seed=3, meta=True)
    out = model(torch.empty(3, 8, device="meta"))
    assert out.is_meta and out.shape == (3, 2)
