"""The space contract's property for the big-model load (``lowdim.testing.space_contract`` collects it with the
rest): a model built on the meta device (accelerate's ``init_empty_weights``, transformers' ``low_cpu_mem_usage``),
injected, then loaded with ``load_state_dict(sd, assign=True)`` computes what the saved model did. The frozen bases
are no state dict entry, so nothing in the load brings them off meta: lowdim makes them again from the seed on the
params' device. A space whose bases could not be made again that way would compute with whatever memory is there,
an output that changes on every call and no error, so every space, a plugin's included, is held to it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.testing.contract_cases import PROPERTY, SPACES, cases, make_space

# Both layer kinds a space must take (``contract_layer_kinds``): a lookup table, then a linear layer on its rows.
TARGETS = lowdim.LayerSet("meta-load", ("0", "1"), types=("embedding", "linear"))


def table_then_linear(case: dict) -> nn.Module:
    layer = case["layer"]
    return nn.Sequential(nn.Embedding(layer.out_features, layer.in_features),
                         nn.Linear(layer.in_features, layer.out_features))


def saved_state(space_name: str, case: dict) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The model injected on the CPU with a non-zero adapter (ΔW = 0 would hide bases that are wrong), and its
    state dict."""
    torch.manual_seed(case["seed"])
    model = table_then_linear(case)
    adapters = lowdim.inject(model, make_space(space_name, case), TARGETS, seed=case["seed"])
    with torch.no_grad():
        for slot in adapters.slots("default").values():
            for param in slot.params.values():
                param.copy_(torch.randn_like(param))
    model.to(case["dtype"])
    return model, {key: value.clone() for key, value in model.state_dict().items()}


def assign_loaded(space_name: str, case: dict, state: dict[str, torch.Tensor], inside: bool) -> nn.Module:
    """The same model built under ``torch.device("meta")``, injected inside that block or after it, then loaded
    the way accelerate and transformers load a big model: the state dict's tensors put in place of the empty ones."""
    with torch.device("meta"):
        model = table_then_linear(case)
        if inside:
            lowdim.inject(model, make_space(space_name, case), TARGETS, seed=case["seed"])
    if not inside:
        lowdim.inject(model, make_space(space_name, case), TARGETS, seed=case["seed"])
    model.to(case["dtype"])
    model.load_state_dict(state, strict=True, assign=True)
    return model


@pytest.mark.parametrize("space_name", SPACES)
@settings(PROPERTY, max_examples=5)
@given(case=cases(), inside=st.booleans())
def test_a_meta_built_model_assign_loaded_computes_what_the_saved_model_did(space_name, case, inside):
    saved, state = saved_state(space_name, case)
    model = assign_loaded(space_name, case, state, inside)
    on_meta = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    assert not on_meta, (f"space '{space_name}': after load_state_dict(sd, assign=True) into a model built on the "
                         f"meta device, {', '.join(on_meta)} stayed on meta")
    ids = torch.randint(0, case["layer"].out_features, (3, 4))
    with torch.no_grad():
        expected = saved(ids)
        for _ in range(2):  # bases left as empty memory give another output on every call
            torch.testing.assert_close(model(ids), expected, msg=lambda why: (
                f"space '{space_name}': a model built on meta and assign-loaded computes other than the model "
                f"whose state dict it loaded (the frozen bases must be made again from the seed): {why}"))
