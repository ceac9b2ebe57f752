"""Injection into arbitrary torch models: selection, several adapters, scale, remove, per-sample."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim.injection import AdapterLayer, LayerSet


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.to_q = nn.Linear(8, 8)
        self.to_v = nn.Linear(8, 8)
        self.mix = nn.Conv2d(8, 8, kernel_size=1)
        self.spatial = nn.Conv2d(8, 8, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 8, H, W)
        tokens = x.flatten(2).transpose(1, 2)
        tokens = self.to_q(tokens) + self.to_v(tokens)
        image = tokens.transpose(1, 2).reshape(x.shape)
        return self.spatial(self.mix(image))


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(Block(), Block())


def randomize(adapters: lowdim.Adapters, name: str) -> None:
    with torch.no_grad():
        for param in adapters.parameters(name):
            param.copy_(torch.randn_like(param) * 0.3)


def test_layer_sets_select_by_pattern_and_type():
    model = make_model()
    adapters = lowdim.inject(model, lowdim.get_space("lora"), LayerSet("qv", ("*.to_q", "*.to_v")))
    assert [layer.name for layer in adapters.info("default").layers] == ["0.to_q", "0.to_v", "1.to_q", "1.to_v"]
    convs = lowdim.inject(make_model(), lowdim.get_space("lora"), [r"re:.*\.(mix|spatial)"])
    # 3x3 convolutions are not adaptable as linear maps; only the 1x1 ones are picked.
    assert [layer.name for layer in convs.info("default").layers] == ["0.mix", "1.mix"]
    with pytest.raises(LowdimError, match=r"'0\.spatial' is a Conv2d with a 3x3 kernel, stride 1, padding 1"):
        lowdim.inject(make_model(), lowdim.get_space("lora"), ["*.spatial"])


def test_a_bare_module_name_as_peft_takes_it_is_answered_with_the_pattern_that_matches():
    with pytest.raises(LowdimError, match=r"^pattern 'to_q' matches no layer: a pattern matches whole dotted names, "
                                          r"so '\*\.to_q' is the one that matches the 2 layers named to_q, "
                                          r"e\.g\. 0\.to_q$"):
        lowdim.inject(make_model(), lowdim.get_space("lora"), ["to_q"])
    assert len(lowdim.inject(make_model(), lowdim.get_space("lora"), ["*.to_q"]).info().layers) == 2


def test_a_pattern_on_another_kind_of_module_names_what_it_found():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Embedding(6, 4))
    no_linear = r"matches no linear/conv1x1 layer \('1' is a ReLU\); real names look like: 0$"
    with pytest.raises(LowdimError, match=no_linear):
        lowdim.inject(model, lowdim.get_space("lora"), ["1"])
    with pytest.raises(LowdimError, match=r"'2' is an Embedding, which patterns given as a string or list leave out"):
        lowdim.inject(model, lowdim.get_space("lora"), ["2"])


def test_a_lazy_layer_is_named_until_a_forward_pass_gives_it_a_shape():
    model = nn.Sequential(nn.Linear(3, 5), nn.LazyLinear(4))
    with pytest.raises(LowdimError, match=r"^layer '1' is an nn.LazyLinear whose shape is not known yet; run one"):
        lowdim.inject(model, lowdim.get_space("lora"), ["1"])
    model(torch.randn(2, 3))
    adapters = lowdim.inject(model, lowdim.get_space("lora"), ["1"])
    assert [(layer.out_features, layer.in_features) for layer in adapters.info("default").layers] == [(4, 5)]


def test_a_pattern_that_matches_nothing_lists_real_names():
    with pytest.raises(LowdimError) as error:
        lowdim.inject(make_model(), lowdim.get_space("lora"), ["*.to_k"])
    message = str(error.value)
    assert "*.to_k" in message and "to_q" in message
    assert "\n" not in message


def test_named_adapters_have_scales_and_can_be_enabled_and_disabled():
    model = make_model()
    x = torch.randn(2, 8, 3, 3)
    base = model(x)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["*.to_q", "*.mix"], name="alice")
    adapters.add("bob", lowdim.get_space("lidb", a=4, b=4), ["*.to_v"], seed=1)
    randomize(adapters, "alice")
    randomize(adapters, "bob")
    both = model(x)
    adapters.disable("bob")
    only_alice = model(x)
    adapters.set_scale("alice", 0.0)
    assert torch.allclose(model(x), base, atol=1e-6)
    adapters.set_scale("alice", 1.0)
    adapters.enable("bob")
    assert torch.allclose(model(x), both, atol=1e-6)
    assert not torch.allclose(only_alice, both)
    layer = model[0].to_q
    tokens = torch.randn(5, 8)
    once = layer(tokens) - layer.base_layer(tokens)
    adapters.set_scale("alice", 2.0)
    assert torch.allclose(layer(tokens) - layer.base_layer(tokens), 2 * once, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(-2, 2, allow_nan=False))
def test_a_scale_on_some_layers_changes_only_those(scale):
    # Per-part scales (a text encoder's part of an SD adapter at 0, its UNet part kept) rest on this.
    model = make_model()
    tokens = torch.randn(5, 8)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["*.to_q", "*.to_v"], name="alice")
    randomize(adapters, "alice")
    q, v = model[0].to_q, model[0].to_v
    update_q, update_v = q(tokens) - q.base_layer(tokens), v(tokens) - v.base_layer(tokens)
    adapters.set_scale("alice", scale, layers="*.to_v")
    assert torch.allclose(q(tokens) - q.base_layer(tokens), update_q, atol=1e-6)
    assert torch.allclose(v(tokens) - v.base_layer(tokens), scale * update_v, atol=1e-5)


def test_a_layer_scale_that_matches_nothing_or_a_merged_layer_changes_nothing():
    model = make_model()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["*.to_q", "*.to_v"], name="alice")
    with pytest.raises(LowdimError, match=r"no layer matches text_encoder\.\*.*to_q") as caught:
        adapters.set_scale("alice", 0.0, layers=["text_encoder.*"])
    assert "\n" not in str(caught.value)
    adapters.merge("alice")
    with pytest.raises(LowdimError, match="merged"):
        adapters.set_scale("alice", 0.0, layers="*.to_v")
    assert {slot.scale for slot in adapters.slots("alice").values()} == {1.0}


def test_remove_restores_the_original_modules_and_state_dict():
    model = make_model()
    originals = {name: module for name, module in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4), ["*.to_q", "*.mix"])
    randomize(adapters, "default")
    adapters.merge("default")
    assert any(isinstance(m, AdapterLayer) for m in model.modules())
    adapters.remove_all()
    assert not any(isinstance(m, AdapterLayer) for m in model.modules())
    assert {name: module for name, module in model.named_modules()} == originals
    assert all(torch.allclose(model.state_dict()[k], v, atol=1e-6) for k, v in state.items())
    assert adapters.names() == []


def test_merged_adapter_is_inference_free_and_refuses_rescaling():
    model = make_model()
    x = torch.randn(2, 8, 3, 3)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=3), ["*.to_q", "*.mix"])
    randomize(adapters, "default")
    expected = model(x)
    adapters.merge("default")
    assert all(slot.live_factors() is None for slot in adapters.slots("default").values())
    with torch.no_grad():  # evaluated, as a merged model is: with grad on lowdim warns "unmerge it before training"
        assert torch.allclose(model(x), expected, atol=1e-5)
    with pytest.raises(LowdimError, match="merged"):
        adapters.set_scale("default", 0.5)


def test_per_sample_adapters_run_different_subjects_in_one_forward():
    x = torch.randn(3, 8, 2, 2)
    batched_model = make_model()
    adapters = lowdim.inject(batched_model, lowdim.get_space("lidb", a=5, b=3), ["*.to_q", "*.mix"], batch=3)
    randomize(adapters, "default")
    batched = batched_model(torch.cat([x, x]))  # CFG-style tiling: sample j uses subject j % 3
    for subject in range(3):
        single = make_model()
        one = lowdim.inject(single, lowdim.get_space("lidb", a=5, b=3), ["*.to_q", "*.mix"])
        one.load_tensors("default", {layer: {k: v[subject] for k, v in t.items()}
                                     for layer, t in adapters.tensors("default").items()})
        expected = single(x[subject : subject + 1])
        assert torch.allclose(batched[subject : subject + 1], expected, atol=1e-5)
        assert torch.allclose(batched[3 + subject : 4 + subject], expected, atol=1e-5)
    with pytest.raises(LowdimError, match="per-sample"):
        adapters.merge("default")


def test_override_runs_computed_tensors_and_gradients_reach_their_producer():
    model = make_model()
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4), ["*.to_q"])
    producer = nn.Linear(1, 8)  # stands in for a hypernetwork
    shapes = {layer: {k: v.shape for k, v in t.items()} for layer, t in adapters.tensors("default").items()}
    flat = producer(torch.ones(2, 1))  # two samples
    predicted = {
        layer: {"A_train": flat[:, :4].reshape(2, 4, 1), "B_train": flat[:, 4:].reshape(2, 1, 4)}
        for layer in shapes
    }
    x = torch.randn(2, 8, 2, 2)
    with adapters.override("default", predicted):
        model(x).pow(2).sum().backward()
    assert producer.weight.grad is not None and producer.weight.grad.abs().sum() > 0
    assert all(slot.override is None for slot in adapters.slots("default").values())


def test_duplicate_and_invalid_adapter_names_are_errors():
    model = make_model()
    adapters = lowdim.inject(model, lowdim.get_space("lora"), ["*.to_q"])
    with pytest.raises(LowdimError, match=r"'default' already exists on this model; give this one another name"):
        adapters.add("default", lowdim.get_space("lora"), ["*.to_v"])
    with pytest.raises(LowdimError, match="identifier"):
        adapters.add("my adapter", lowdim.get_space("lora"), ["*.to_v"])
    with pytest.raises(LowdimError, match="present: default"):
        adapters.info("nope")


def test_multihead_attention_out_proj_is_not_a_target_because_torch_bypasses_its_forward():
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16)
    with pytest.raises(LowdimError, match="matches only self_attn.out_proj, the out_proj of an nn.MultiheadAttention"):
        lowdim.inject(layer, lowdim.get_space("lora"), ["self_attn.out_proj"])
    adapters = lowdim.inject(layer, lowdim.get_space("lora"), ["linear1", "linear2"])
    assert [spec.name for spec in adapters.info("default").layers] == ["linear1", "linear2"]
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16), 2,
                                    enable_nested_tensor=False)
    with pytest.raises(LowdimError, match=r"matches only the out_proj of 2 nn.MultiheadAttention layers "
                                          r"\(layers.0.self_attn.out_proj, ...\), which read those weights "
                                          r"directly: they cannot carry adapters"):
        lowdim.inject(encoder, lowdim.get_space("lora"), ["*out_proj"])


def test_a_lora_rank_beyond_a_layers_size_is_kept_and_noted():
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 8))
    with pytest.warns(UserWarning, match=r"adapter 'default': on 1 layer the rank exceeds what the layer holds"):
        info = lowdim.inject(model, lowdim.get_space("lora", rank=4), ["0", "2"]).info("default")
    assert info.notes == ["rank=4 exceeds 0's 6x3: its update has rank at most 3, and the extra params add nothing"]
    assert lowdim.get_space("lora", rank=4).param_shapes(info.layers[0]) == {"down": (4, 3), "up": (6, 4)}


def test_an_adapter_is_made_in_fp32_on_a_half_model_and_follows_a_later_cast():
    half = nn.Sequential(nn.Linear(4, 4)).half()
    assert {p.dtype for p in lowdim.inject(half, lowdim.get_space("lora"), ["0"]).parameters()} == {torch.float32}
    model = nn.Sequential(nn.Linear(4, 4))
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=3, b=3), ["0"])
    model.half()
    assert {p.dtype for p in adapters.parameters()} == {torch.float16}
    assert {b.dtype for b in adapters.buffers()["0"].values()} == {torch.float32}
