"""lowdim on models that are not diffusion models: a tiny BERT (LiDB) and nn.TransformerEncoder (LoRA).

Each round trip trains an adapter for a few steps, saves it, loads it into a freshly built base
model with the same weights, and compares outputs. The BERT part reuses the functions of
``examples/lidb_on_bert.py``, loaded from its file so that ``examples`` need not be a package.
The encoder part also checks PyTorch's fused inference fast path, which reads ``linear1.weight``
instead of calling ``linear1``: it must see the live adapters.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from unittest import mock

import pytest
import script_loader
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim

pytest.importorskip("transformers")

def _load_example():
    return script_loader.load_script("examples/lidb_on_bert.py", "lowdim_example_lidb_on_bert")


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
    # Training mode, as for training; with dropout=0 it computes the same function as eval mode.
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


# -- nn.TransformerEncoder's fused fast path ---------------------------------------------------------
# In eval mode with no gradient needed, nn.TransformerEncoder(Layer) skips its submodules' forwards
# and runs torch._transformer_encoder_layer_fwd on linear1.weight, linear2.weight, ... (with a
# padding mask, on a nested tensor). The adapter wrapper must hand it the effective weights.
FAST_PATH = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUSED_MODES = ("no_grad", "inference_mode")  # eval mode and no gradient: torch takes the fused kernel
MODES = FUSED_MODES + ("train", "eval_grad")  # eval_grad: eval mode, the adapter's params require grad


def fast_encoder(seed: int, num_layers: int) -> nn.TransformerEncoder:
    """Meets every condition of the fast path: batch_first, even heads, relu, frozen base weights."""
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=24, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=num_layers).requires_grad_(False).eval()


def fast_data(seed: int, padded: bool, n: int = 3) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 16, generator=generator)
    if not padded:
        return x, None
    lengths = torch.randint(1, 6, (n,), generator=generator)
    return x, torch.arange(5)[None, :] >= lengths[:, None]  # True = padding, at least one real token


def run_encoder(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, mode: str) -> tuple[torch.Tensor, int]:
    """The output (padded positions zeroed: the fused path leaves them 0) and the number of fused calls."""
    model.train(mode == "train")
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(mode, torch.enable_grad)
    fused = mock.patch.object(torch, "_transformer_encoder_layer_fwd", wraps=torch._transformer_encoder_layer_fwd)
    with fused as calls, context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "nested tensors are in prototype stage"
        out = model(x, src_key_padding_mask=mask)
        if mask is not None:
            out = out.masked_fill(mask[..., None], 0.0)
    return out, calls.call_count


def randomize(adapters: lowdim.Adapters, name: str, seed: int) -> None:
    """Non-zero adapter tensors, so that ΔW ≠ 0 and equal outputs prove something."""
    generator = torch.Generator().manual_seed(seed)
    tensors = adapters.tensors(name)
    adapters.load_tensors(name, {
        layer: {k: 0.3 * torch.randn(v.shape, generator=generator) for k, v in params.items()}
        for layer, params in tensors.items()
    })


def encoder_space(space_name: str) -> lowdim.Space:
    return lowdim.get_space("lidb", a=12, b=8, rank=1) if space_name == "lidb" else lowdim.get_space("lora", rank=2)


@FAST_PATH
@given(space_name=st.sampled_from(["lora", "lidb"]), mode=st.sampled_from(MODES), num_layers=st.integers(1, 2),
       scale=st.sampled_from([1.0, 0.5, -2.0]), padded=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_encoder_with_live_adapter_equals_merged_in_every_mode(space_name, mode, num_layers, scale, padded, seed):
    model = fast_encoder(seed, num_layers)
    x, mask = fast_data(seed, padded)
    base, base_fused = run_encoder(model, x, mask, mode)
    assert base_fused == (0 if mode == "train" else num_layers)  # the test really covers the fast path

    adapters = lowdim.inject(model, encoder_space(space_name), ENCODER_TARGETS, seed=seed, scale=scale)
    randomize(adapters, "default", seed)
    live, fused = run_encoder(model, x, mask, mode)
    # A live adapter whose params require grad turns the fast path off only where a gradient is wanted.
    assert fused == (num_layers if mode in FUSED_MODES else 0)
    assert (live - base).abs().max() > 1e-3
    if mode not in FUSED_MODES:
        live.square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters.parameters("default"))

    adapters.disable("default")
    disabled, _ = run_encoder(model, x, mask, mode)
    assert torch.allclose(disabled, base, rtol=1e-6, atol=1e-6)
    adapters.enable("default")

    adapters.merge("default")
    merged, _ = run_encoder(model, x, mask, mode)
    assert torch.allclose(live, merged, rtol=1e-5, atol=1e-5), (live - merged).abs().max()


@FAST_PATH
@given(batch=st.integers(2, 3), mode=st.sampled_from(FUSED_MODES), padded=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_encoder_per_sample_adapters_turn_the_fast_path_off(batch, mode, padded, seed):
    model = fast_encoder(seed, 2)
    x, mask = fast_data(seed, padded, n=2 * batch)  # the input batch must be a multiple of the adapter batch
    adapters = lowdim.Adapters(model)
    adapters.add("subjects", encoder_space("lora"), ENCODER_TARGETS, seed=seed, batch=batch)
    randomize(adapters, "subjects", seed)
    out, fused = run_encoder(model, x, mask, mode)
    assert fused == 0  # no single weight holds per-sample adapters: torch calls the layers instead

    tensors = adapters.tensors("subjects")
    for j in range(x.shape[0]):
        # Sample j uses adapter j % batch; with that adapter alone the fast path runs again.
        one = {layer: {k: v[j % batch] for k, v in params.items()} for layer, params in tensors.items()}
        row_mask = None if mask is None else mask[j:j + 1]
        with adapters.override("subjects", one):
            expected, expected_fused = run_encoder(model, x[j:j + 1], row_mask, mode)
        assert expected_fused == 2
        assert torch.allclose(out[j:j + 1], expected, rtol=1e-5, atol=1e-5), (out[j:j + 1] - expected).abs().max()

    weight = model.layers[0].linear1.weight
    assert weight.shape == (24, 16) and weight.dtype == torch.float32
    with pytest.raises(lowdim.LowdimError, match="layers.0.linear1 carries per-sample adapters"):
        nn.functional.linear(x, weight)
    with pytest.raises(lowdim.LowdimError, match="per-sample"):
        weight.T  # noqa: B018 (a silent base weight would ignore the adapters)


def test_the_readme_snippet_runs_as_written_on_a_bert(tmp_path, monkeypatch):
    """README's "Use it on any model", with a BERT for `model` and one step for its `...`."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = readme.split("## Use it on any model\n\n```python\n", 1)[1].split("```", 1)[0]
    assert "\n...  " in snippet  # the line a user fills with training
    step = "model(input_ids=ids, labels=labels).loss.backward(); optimizer.step()"
    monkeypatch.chdir(tmp_path)
    model, fresh_model = example.build_base(seed=0), example.build_base(seed=0)
    ids, labels = example.make_data(n=4)
    names = {"model": model, "fresh_model": fresh_model, "ids": ids, "labels": labels, "x": ids}
    exec(compile(snippet.replace("\n...", "\n" + step + "  #"), "README.md", "exec"), names)
    trained = example.logits(fresh_model, ids)  # the file, loaded into the fresh copy
    assert not torch.allclose(trained, example.logits(example.build_base(seed=0), ids))
    assert torch.allclose(example.logits(model, ids), trained, atol=1e-2)  # fp16 file; merged and unloaded
    assert not any("lowdim" in type(module).__module__ for module in model.modules())


def test_gpt2s_conv1d_layers_are_named_for_what_they_are_and_its_linear_head_adapts():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=8))
    with pytest.raises(lowdim.LowdimError, match=r"'transformer.h.0.attn.c_attn' is a transformers Conv1D "
                                                 r"\(GPT-2's transposed linear layer\), which lowdim does not adapt"):
        lowdim.inject(model, lowdim.get_space("lora"), ["*.attn.c_attn"])
    adapters = lowdim.inject(model, lowdim.get_space("lora"), ["lm_head"])
    assert [layer.name for layer in adapters.info("default").layers] == ["lm_head"]
