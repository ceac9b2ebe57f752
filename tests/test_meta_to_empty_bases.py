"""An injected model moved to the meta device and back with ``to_empty()`` (accelerate's and HF's
``init_empty_weights`` idiom) gets its frozen bases made again from the adapter's seed: they are no state dict
entry, so nothing else could restore them, and uninitialised memory there made the model compute inf/nan."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim

SPACE = dict(name="lidb", a=8, b=8, rank=1, init="gaussian")


def plain_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8))
    return model.requires_grad_(False)


def injected(model: nn.Module) -> nn.Module:
    space = lowdim.get_space(SPACE["name"], **{k: v for k, v in SPACE.items() if k != "name"})
    lowdim.inject(model, space, ["0", "2"], seed=3)
    return model


@pytest.fixture
def original():
    model = injected(plain_model())
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_()  # a trained adapter, so that a wrong basis shows in the output
    return model


def emptied(model: nn.Module) -> nn.Module:
    model.to("meta")
    return model.to_empty(device="cpu")


@pytest.mark.parametrize("guard_keys", [True, False], ids=["state-dict", "state-dict-without-lowdim-records"])
def test_to_meta_then_to_empty_then_load_state_dict_computes_what_the_original_did(original, guard_keys):
    state = {key: value.clone() for key, value in original.state_dict().items()
             if guard_keys or "lowdim_" not in key}
    model = emptied(injected(plain_model()))
    model.load_state_dict(state, strict=True)
    x = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
    again = injected(plain_model())  # what the reloaded model saves loads anywhere the original's would
    again.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(again(x), original(x))


def test_injecting_into_a_model_built_on_meta_then_to_empty_loads_the_original(original):
    with torch.device("meta"):
        model = plain_model()
    injected(model).to_empty(device="cpu")
    model.load_state_dict(original.state_dict(), strict=True)
    x = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
