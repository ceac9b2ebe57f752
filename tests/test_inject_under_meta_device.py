"""``inject`` inside ``with torch.device("meta"):``, the usual way to build a big model without its memory, works as
injecting a meta-built model after the block does: the space's checks need real values, so they run on the CPU,
not on the tensors the default device would make meta (a bare "Tensor.item() cannot be called on meta tensors"
before). The adapter lands on meta with the model, and ``to_empty`` or an assign load gives the original's output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim

SPACES: dict[str, dict] = {
    "lidb": dict(a=4, b=4, init="gaussian"),
    "lora": dict(init="gaussian"),
    "vera": dict(b_init=0.5, rank=4),
}
SEED = 5


def space(name: str) -> lowdim.Space:
    if name == "vera":
        pytest.importorskip("lowdim_vera")
    return lowdim.get_space(name, **SPACES[name])


def mlp(width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 2)).eval()


def trained_original(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = mlp()
    lowdim.inject(model, space(name), ["*"], seed=SEED)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # a trained adapter, so that a wrong or empty basis shows in the output
                param.normal_(0, 0.5)
    return model


def injected_under_meta(name: str, build=mlp) -> nn.Module:
    with torch.device("meta"):
        model = build()
        lowdim.inject(model, space(name), ["*"], seed=SEED)
    return model


@pytest.mark.parametrize("name", list(SPACES))
@pytest.mark.parametrize("route", ["to_empty", "assign"])
def test_inject_inside_the_meta_block_then_load_computes_what_the_original_did(name, route):
    original = trained_original(name)
    state = {key: value.clone() for key, value in original.state_dict().items()}
    model = injected_under_meta(name)
    if route == "to_empty":
        model.to_empty(device="cpu")
        model.load_state_dict(state, strict=True)
    else:
        model.load_state_dict(state, strict=True, assign=True)
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


@pytest.mark.parametrize("name", list(SPACES))
def test_inject_inside_the_meta_block_leaves_an_sd_size_layer_and_its_adapter_on_meta(name):
    def ff() -> nn.Module:  # an SD UNet feed-forward projection: 1280 -> 10240, 50 MB of fp32 were it real
        return nn.Sequential(nn.Linear(1280, 10240))

    model = injected_under_meta(name, ff)
    adapter = {key for key, param in model.named_parameters() if param.requires_grad}
    assert adapter, "inject made no trainable adapter params"
    placed = {key: tensor.device.type for key, tensor in [*model.named_parameters(), *model.named_buffers()]}
    assert set(placed.values()) == {"meta"}, {key: kind for key, kind in placed.items() if kind != "meta"}
