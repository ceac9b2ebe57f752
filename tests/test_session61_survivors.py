"""Tests that kill the surviving mutants of session 61's mutation audit of the core (review EY, lowdim/injection and
the adapter files): a load refused after its adapter was added leaves none behind, a tensor that would broadcast
into a param is refused, a wrapped layer's bias is guarded as its weight is, a damaged embedding record is refused by
a read without a model, and torch's fused path reads a wrapped weight at the adapter's scale."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError, LowdimError


def model_and_file(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    lowdim.inject(model, lowdim.get_space("lidb", a=3, b=3), ["0", "2"], seed=5)
    path = lowdim.save_adapter(tmp_path / "a.safetensors", model)
    return path


def test_a_load_refused_after_the_adapter_was_added_leaves_no_adapter_and_a_retry_works(tmp_path):
    path = model_and_file(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
        metadata = dict(handle.metadata())
    metadata["basis_checksum"] = "0" * 16  # bases regenerate fine, but not to what the file says: refused in _fill
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata=metadata)
    fresh = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    before = [module for module in fresh.modules()]
    with pytest.raises(AdapterFileError, match="edited.safetensors"):
        lowdim.load_adapter(edited, fresh)
    assert lowdim.Adapters(fresh).names() == []
    assert [type(m) for m in fresh.modules()] == [type(m) for m in before]  # no wrapper left behind
    assert lowdim.load_adapter(path, fresh).name == "default"  # the name is free for the right file


def test_load_tensors_refuses_a_tensor_that_would_broadcast_into_a_param():
    model = nn.Sequential(nn.Linear(8, 6))
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    tensors = {layer: {key: value.detach().clone() for key, value in params.items()}
               for layer, params in adapters.tensors("default").items()}
    up = tensors["0"]["up"]
    tensors["0"]["up"] = torch.ones(1, up.shape[1])  # broadcasts into (6, 2): a silent copy of one row everywhere
    with pytest.raises(LowdimError, match=r"params 0.up: expected shape \(6, 2\), got \(1, 2\)"):
        adapters.load_tensors("default", tensors)


@pytest.mark.parametrize("attribute", ["weight", "bias"])
@pytest.mark.parametrize("value", [lambda: nn.Parameter(torch.zeros(6)), lambda: torch.zeros(6)])
def test_assigning_a_wrapped_layers_weight_or_bias_is_one_line_naming_the_way(attribute, value):
    model = nn.Sequential(nn.Linear(4, 6))
    lowdim.inject(model, lowdim.get_space("lora"), ["0"])
    with pytest.raises(LowdimError, match=rf"layer 0 carries an adapter.*assign layer.base_layer.{attribute} instead"):
        setattr(model[0], attribute, value())


@pytest.mark.parametrize("value", ["not json", '{"0": true}', "[0]", '["nowhere"]'])
def test_a_damaged_embedding_record_is_refused_by_a_read_without_a_model_and_by_export(tmp_path, value):
    # export (read_adapter(path).lora_factors()) reads a file with no model: a record no reader can use would ship.
    model = nn.Sequential(nn.Linear(4, 4))
    lowdim.inject(model, lowdim.get_space("lora"), ["0"])
    path = lowdim.save_adapter(tmp_path / "a.safetensors", model)
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = {**handle.metadata(), "embedding_layers": value}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(AdapterFileError, match="embedding_layers") as refused:
        lowdim.read_adapter(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)


def test_the_weight_fused_paths_read_carries_the_adapters_scale():
    # nn.TransformerEncoderLayer's fused inference path reads linear1/linear2.weight instead of calling them:
    # at any scale it must compute what the module computes.
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0).eval()
    adapters = lowdim.inject(layer, lowdim.get_space("lora", rank=2), ["linear1", "linear2"])
    with torch.no_grad():
        for param in adapters.parameters():
            param.copy_(torch.randn_like(param))
    x = torch.randn(2, 5, 8)
    for scale in (1.0, 0.5, -2.0):
        adapters.set_scale("default", scale)
        wrapper = layer.linear1
        assert torch.allclose(nn.functional.linear(x, wrapper.weight, wrapper.bias), wrapper(x), atol=1e-5)
        slow = layer(x)  # grad enabled: the module path
        with torch.no_grad():
            fused = layer(x)  # eval + no_grad: torch's fused path, which reads .weight
        assert torch.allclose(fused, slow, atol=1e-4), scale
