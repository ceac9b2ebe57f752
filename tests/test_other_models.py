"""lowdim on models that are not diffusion models: a tiny BERT (LiDB) and nn.TransformerEncoder (LoRA).

Each round trip trains an adapter for a few steps, saves it, loads it into a freshly built base
model with the same weights, and compares outputs. The BERT part reuses the functions of
``examples/lidb_on_bert.py``, loaded from its file so that ``examples`` need not be a package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import lowdim

pytest.importorskip("transformers")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lidb_on_bert.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("lowdim_example_lidb_on_bert", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


example = _load_example()


@pytest.fixture(scope="module")
def bert_round_trip(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert") / "bert_lidb.safetensors"
    return path, example.round_trip(path, seed=0, steps=20)


# -- BERT + LiDB (the example) ---------------------------------------------------------------------
def test_bert_lidb_training_lowers_the_loss(bert_round_trip):
    _, result = bert_round_trip
    assert len(result.losses) == 20
    assert result.losses[-1] < 0.6 * result.losses[0], result.losses


def test_bert_lidb_targets_only_query_and_value(bert_round_trip):
    path, _ = bert_round_trip
    adapter = lowdim.read_adapter(path)
    names = [layer.name for layer in adapter.layers]
    assert names == [f"bert.encoder.layer.{i}.attention.self.{proj}" for i in range(2) for proj in ("query", "value")]
    assert adapter.space.name == "lidb"
    assert adapter.num_params == 4 * (16 * 1 + 1 * 8)  # a·r + r·b per layer, a=16, b=8, r=1


def test_bert_lidb_reloaded_into_fresh_model_gives_same_outputs(bert_round_trip):
    _, result = bert_round_trip
    # The adapter must matter, or equal outputs below would prove nothing.
    assert (result.trained - result.base).abs().max() > 1e-2
    assert torch.allclose(result.reloaded, result.trained, rtol=1e-6, atol=1e-6)
    trained = lowdim.Adapters(result.trained_model).tensors("default")
    reloaded = lowdim.Adapters(result.reloaded_model).tensors("default")
    assert trained.keys() == reloaded.keys()
    for layer, params in trained.items():
        for name, value in params.items():
            assert torch.equal(reloaded[layer][name], value), f"{layer}.{name}"


def test_bert_lidb_merge_matches_unmerged_and_unmerge_restores(bert_round_trip):
    _, result = bert_round_trip
    model = result.reloaded_model
    ids, _ = example.make_data(n=8, seed=1)
    weight = model.bert.encoder.layer[0].attention.self.query.base_layer.weight
    original = weight.clone()
    adapters = lowdim.Adapters(model)
    adapters.merge("default")
    try:
        assert not torch.equal(weight, original)  # the update really went into the base weight
        assert torch.allclose(example.logits(model, ids), result.reloaded, rtol=1e-5, atol=1e-5)
    finally:
        adapters.unmerge("default")
    assert torch.allclose(weight, original, atol=1e-6)
    assert torch.allclose(example.logits(model, ids), result.reloaded, rtol=1e-5, atol=1e-5)


def test_bert_adapter_does_not_load_into_another_architecture(bert_round_trip):
    path, _ = bert_round_trip
    with pytest.raises(lowdim.AdapterFileError, match="does not fit this model"):
        lowdim.load_adapter(path, build_encoder(0))


# -- nn.TransformerEncoder + LoRA ------------------------------------------------------------------
# nn.MultiheadAttention reads out_proj.weight itself instead of calling out_proj, so its only
# injectable linears are the feed-forward linear1/linear2.
ENCODER_TARGETS = ["*.linear1", "*.linear2"]


def build_encoder(seed: int) -> nn.TransformerEncoder:
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=2, dim_feedforward=64, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    model.requires_grad_(False)
    # Training mode keeps PyTorch's fused inference fast path (which reads linear1.weight directly,
    # bypassing any wrapper) off; with dropout=0 it computes the same function as eval mode.
    return model.train()


def encoder_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 6, 32, generator=generator)
    target = torch.randn(16, 6, 32, generator=generator)
    return x, target


def test_transformer_encoder_lora_round_trip(tmp_path):
    model = build_encoder(0)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=1), ENCODER_TARGETS, seed=3)
    assert sorted(adapters.slots("default")) == [f"layers.{i}.linear{j}" for i in range(2) for j in (1, 2)]
    optimizer = torch.optim.AdamW(adapters.parameters("default"), lr=3e-2, weight_decay=0.0)
    x, target = encoder_data()
    losses = []
    for _ in range(25):
        loss = nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses

    path = lowdim.save_adapter(tmp_path / "encoder_lora.safetensors", model, dtype="fp32")
    fresh = build_encoder(0)
    probe = encoder_data(seed=1)[0]
    with torch.no_grad():
        base_out = fresh(probe)
        lowdim.load_adapter(path, fresh)
        reloaded_out = fresh(probe)
        trained_out = model(probe)
    assert (trained_out - base_out).abs().max() > 1e-3
    assert torch.allclose(reloaded_out, trained_out, rtol=1e-6, atol=1e-6)
