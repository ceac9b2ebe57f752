"""Review FI: rank relaxation merges the initial adapter into a caller's model; left_as_given must copy the
merged layers' weights back bit for bit (unmerging subtracts what merging added, which rounds)."""

from __future__ import annotations

import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import left_as_given, rank_relaxed_trainable, resolve_layers


def test_a_merged_initial_adapter_leaves_the_callers_weights_bit_for_bit(tiny_sd, tmp_path):
    source = load_sd(str(tiny_sd))
    view = lowdim.Adapters(source.modules)
    view.add("default", lowdim.get_space("lora", rank=2), resolve_layers(None), seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in view.parameters("default"):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    initial = lowdim.save_adapter(tmp_path / "initial.safetensors", view, "default")
    model = load_sd(str(tiny_sd))
    before = {key: value.detach().clone() for key, value in model.modules.state_dict().items()}
    with left_as_given(model, initial=initial):
        rank_relaxed_trainable(model, initial, rank=2)  # merges the initial adapter into the weights
        layer = lowdim.read_adapter(initial).layers[0].name
        module = model.modules.get_submodule(layer)
        merged = getattr(module, "base_layer", module).weight
        assert not torch.equal(merged, before[f"{layer}.weight"])  # it did change them while merged
    after = model.modules.state_dict()
    assert after.keys() == before.keys()
    assert [key for key, value in before.items() if not torch.equal(after[key], value)] == []
