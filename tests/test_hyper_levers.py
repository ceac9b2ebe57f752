"""The hypernetwork levers of the ladder (docs/ladder.md): standardized targets, pooled memory, cached
features, encoder input, packaged encoders that files do not store, and the retrieval head."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from hyper_groupings import lidb_over_groupings  # noqa: F401  (the lidb fixture: one shape group and three)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_hyper import LAYERS, images, make_net, vit_config

import lowdim
from lowdim.errors import LowdimError
from lowdim.hyper import HyperConfig, HyperNetwork, build_hypernet, load_hypernet, save_hypernet

transformers = pytest.importorskip("transformers")



# -- standardized targets, pooled memory, cached features ---------------------------------------
# Standardizing keeps a mean and a spread per shape group (target_mean<g>, target_std<g>): the tests that fit,
# apply or store them take the lidb fixture, so they also run where the layers fall into three groups.
def random_targets(net: HyperNetwork, count: int, seed: int = 3, loudness: Mapping[str, float] | None = None) -> dict:
    """Each layer's params: normal, times 1 + the param's index, times the layer's ``loudness`` (default 1)."""
    generator = torch.Generator().manual_seed(seed)
    return {layer.name: {name: torch.randn(count, *shape, generator=generator) * (1 + index)
                         * (loudness or {}).get(layer.name, 1.0)
                         for index, (name, shape) in enumerate(net.space.param_shapes(layer).items())}
            for layer in net.layers}


def every_other_group_louder(net: HyperNetwork) -> dict[str, float]:
    """Layers of groups 0, 2, ... a thousand times louder than those of groups 1, 3, ...: a group standardized,
    or its spread floored, with a neighbour's statistics then shows (one group: every layer alike)."""
    return {net.layers[index].name: 1.0 if group % 2 else 1e3
            for group, members in enumerate(net.head_groups.members) for index in members}


def test_a_standardizing_network_starts_at_the_targets_mean_and_its_coordinates_are_z_scores(lidb):
    net = make_net(lidb, standardize=True, head_init_scale=0.0)
    targets = random_targets(net, 50, loudness=every_other_group_louder(net))
    net.set_target_statistics(targets)
    predicted = net(images(2))
    for layer, params in targets.items():
        for name, value in params.items():
            mean = value.double().mean(0).float()  # as fitted: a float32 sum of values near 1e3 rounds off
            torch.testing.assert_close(predicted[layer][name], mean.expand(2, *value.shape[1:]))
    z = torch.cat([part.flatten(1) for part in net.standardized(targets)], dim=1)
    torch.testing.assert_close(z.mean(0), torch.zeros(z.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(z.shape[1]), atol=1e-4, rtol=0)


@given(st.integers(0, 2**16), st.floats(0.01, 100.0))
@settings(max_examples=20, deadline=None)
def test_standardized_coordinates_round_trip_to_the_same_params(lidb, seed, spread):
    net = make_net(lidb, standardize=True)
    net.set_target_statistics({k: {n: v * spread for n, v in p.items()} for k, p in random_targets(net, 8).items()})
    params = {k: {n: v * spread for n, v in p.items()} for k, p in random_targets(net, 3, seed).items()}
    back = net.to_params(net.from_params(params))
    for layer, tensors in params.items():
        for name, value in tensors.items():
            torch.testing.assert_close(back[layer][name], value, rtol=1e-5, atol=1e-5 * spread)


@given(spread=st.one_of(st.just(0.0), st.floats(1e-9, 1e-5)), offset=st.floats(-1e-3, 1e-3))
@example(spread=0.0, offset=1e-3).via("the same value for every identity")
@example(spread=1e-7, offset=1e-3).via("a value that barely varies")
@settings(max_examples=20, deadline=None)
def test_a_near_constant_coordinate_does_not_blow_up_its_z_score(lidb, spread, offset):
    """Its spread is floored relative to its group's: a held-out value a hair away stays a small z."""
    net = make_net(lidb, standardize=True)
    targets = random_targets(net, 20)  # spreads of 1 and more
    first = next(iter(targets))
    name = next(iter(targets[first]))
    wobble = torch.randn(20, *targets[first][name].shape[2:], generator=torch.Generator().manual_seed(0))
    targets[first][name][:, 0] = 1.0 + spread * wobble
    net.set_target_statistics(targets)
    assert torch.isfinite(torch.cat([z.flatten() for z in net.standardized(targets)])).all()
    seen = {layer: {k: v[:1].clone() for k, v in params.items()} for layer, params in targets.items()}
    held_out = {layer: {k: v.clone() for k, v in params.items()} for layer, params in seen.items()}
    held_out[first][name][:, 0] = 1.0 + offset  # a training identity's θ but for that one coordinate
    moved = [new - old for new, old in zip(net.standardized(held_out), net.standardized(seen), strict=True)]
    assert float(torch.cat([z.flatten() for z in moved]).abs().max()) < 1.0


def test_statistics_need_a_standardizing_network():
    net = make_net()
    with pytest.raises(LowdimError, match="standardize=True"):
        net.set_target_statistics(random_targets(net, 4))


def test_given_backbone_features_give_the_same_prediction_as_the_images():
    net = make_net(encoder_pool=2).eval()
    batch = images(3)
    with torch.no_grad():
        features = net.encoder.features(batch)
        direct, cached = net(batch), net(None, features=features)
    for layer, params in direct.items():
        for name, value in params.items():
            torch.testing.assert_close(cached[layer][name], value)


def test_pooling_keeps_the_first_token_and_averages_the_patch_grid():
    from lowdim.hyper import ImageEncoder

    encoder = ImageEncoder("tiny", vit_config(), out_width=8, pool=2)
    features = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)  # 1 + 4x4 patches
    pooled = encoder.pooled(features)
    assert pooled.shape == (2, 5, 3)
    torch.testing.assert_close(pooled[:, 0], features[:, 0])
    grid = features[:, 1:].reshape(2, 4, 4, 3)
    torch.testing.assert_close(pooled[:, 1], grid[:, :2, :2].mean((1, 2)))  # top-left 2x2 block
    torch.testing.assert_close(pooled[:, 4], grid[:, 2:, 2:].mean((1, 2)))


def test_pooling_leaves_out_register_tokens():
    """DINOv2 with registers gives the first token, its register tokens, then the patches: only the patches are
    a grid in the picture."""
    from lowdim.hyper import ImageEncoder

    config = transformers.Dinov2WithRegistersConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                   intermediate_size=16, image_size=56, patch_size=14,
                                                   num_register_tokens=3)
    encoder = ImageEncoder("tiny", config.to_dict(), out_width=8, pool=2)
    features = encoder.features(torch.rand(2, 3, 56, 56) * 2 - 1)
    assert features.shape[1] == 1 + 3 + 16  # the first token, the registers, a 4x4 patch grid
    pooled = encoder.pooled(features)
    grid = features[:, 4:].reshape(2, 4, 4, 8)
    torch.testing.assert_close(pooled[:, 0], features[:, 0])
    torch.testing.assert_close(pooled[:, 1], grid[:, :2, :2].mean((1, 2)))
    torch.testing.assert_close(pooled[:, 4], grid[:, 2:, 2:].mean((1, 2)))


@given(pixel=st.floats(-1.0, 1.0))
@example(pixel=-1.0).via("black is 0.0 before ImageNet's mean and std")
@example(pixel=0.0).via("mid-grey is 0.5")
@settings(max_examples=20, deadline=None)
def test_encoder_input_is_resized_and_normalised_as_configured(pixel):
    """Images come in [-1, 1]; ImageNet's mean and std apply to [0, 1] (white alone can't tell the two apart)."""
    from lowdim.hyper import ImageEncoder

    encoder = ImageEncoder("tiny", vit_config(), out_width=8, input_size=16, normalize="imagenet")
    flat = torch.full((1, 3, 32, 32), pixel)
    prepared = encoder.prepare(flat)
    assert prepared.shape == (1, 3, 16, 16)
    expected = ((pixel + 1) / 2 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(prepared[0], expected[:, None, None].expand(3, 16, 16))
    plain = ImageEncoder("tiny", vit_config(), out_width=8)
    assert plain.prepare(flat) is flat  # the config's own size, no normalisation: untouched


def assert_same_predictions(net, loaded) -> None:
    batch = images(2)
    with torch.no_grad():
        before, after = net.eval()(batch), loaded.eval()(batch)
    for layer, params in before.items():
        for name, value in params.items():
            torch.testing.assert_close(after[layer][name], value)


def test_a_standardizing_network_saves_and_loads_its_statistics(tmp_path, lidb):
    net = make_net(lidb, standardize=True)
    net.set_target_statistics(random_targets(net, 10, loudness=every_other_group_louder(net)))
    save_hypernet(tmp_path / "h.safetensors", net, adapter_seed=0)
    loaded = load_hypernet(tmp_path / "h.safetensors")
    assert_same_predictions(net, loaded)


def test_a_frozen_packaged_encoder_is_rebuilt_from_its_package_not_stored(tmp_path, monkeypatch):
    from lowdim.hyper import encoder as encoders

    torch.manual_seed(5)
    backbone = transformers.ViTModel(vit_config())
    monkeypatch.setitem(encoders.PACKAGED_ENCODERS, "test/packaged-vit", (lambda: backbone, 32))
    net = make_net(encoder="test/packaged-vit", encoder_config=None, freeze_encoder=True)
    path = save_hypernet(tmp_path / "h.safetensors", net, adapter_seed=0)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys, header = list(handle.keys()), handle.metadata()
    assert header["encoder_weights"] == "package" and keys
    assert not [k for k in keys if k.startswith("encoder.backbone.")]
    loaded = load_hypernet(path)
    assert_same_predictions(net, loaded)
    trainable = make_net(encoder="test/packaged-vit", encoder_config=None)  # finetuned: its weights are stored
    save_hypernet(tmp_path / "t.safetensors", trainable, adapter_seed=0)
    with safe_open(str(tmp_path / "t.safetensors"), framework="pt") as handle:
        assert any(k.startswith("encoder.backbone.") for k in handle.keys())  # noqa: SIM118


def test_a_packaged_file_with_missing_own_tensors_is_refused_by_name(tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from lowdim.hyper import encoder as encoders

    monkeypatch.setitem(encoders.PACKAGED_ENCODERS, "test/packaged-vit", (lambda: transformers.ViTModel(
        vit_config()), 32))
    net = make_net(encoder="test/packaged-vit", encoder_config=None, freeze_encoder=True)
    path = save_hypernet(tmp_path / "h.safetensors", net, adapter_seed=0)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    tensors = load_file(path)
    tensors.pop("position")
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(LowdimError, match="missing: position"):
        load_hypernet(path)


# -- the retrieval head -----------------------------------------------------------------------
# The bank keeps one values<g> per shape group: the tests that store, answer or save it take the lidb fixture, and
# check every layer, so a group answered from another group's bank, or with another identity's row, fails.
def retrieval_net(count: int = 5, space: lowdim.Space | None = None, **options):
    torch.manual_seed(0)
    config = HyperConfig(architecture="retrieval", encoder_config=vit_config(), bank_size=count, **options)
    return build_hypernet(config, space or lowdim.get_space("lidb", a=6, b=5), LAYERS)


def assert_rows(predicted: Mapping, targets: Mapping, rows: list[int], **tolerance) -> None:
    """Every layer's every param is its own stored θ of identities ``rows``, in that order."""
    assert predicted.keys() == targets.keys()
    for layer, params in targets.items():
        assert predicted[layer].keys() == params.keys()
        for name, value in params.items():
            torch.testing.assert_close(predicted[layer][name], value[rows], **tolerance)


def test_retrieval_answers_each_stored_image_with_its_own_weights_and_a_look_alike_with_its_neighbours(lidb):
    net = retrieval_net(5, lidb).eval()
    stored = images(5, seed=2)
    targets = random_targets(net, 5)
    with torch.no_grad():
        net.fill(net.encoder.features(stored), targets)
        exact = net(stored)
        near = net(stored[[3, 1]] + 0.01 * images(2, seed=7))  # a slightly different picture of 3 and 1
    assert_rows(exact, targets, [0, 1, 2, 3, 4])
    assert_rows(near, targets, [3, 1])
    for item in (4, 0, 2):  # what rendering the bank (retrieval_fill) loads for each stored identity
        assert_rows(net.stored_params(item), targets, [item])


@given(loudness=st.lists(st.floats(0.02, 50.0), min_size=5, max_size=5), query_loudness=st.floats(0.02, 50.0))
@example(loudness=[50.0, 1.0, 1.0, 1.0, 1.0], query_loudness=1.0).via("one loud identity")
@settings(max_examples=15, deadline=None)
def test_retrieval_finds_the_nearest_identity_by_direction_not_by_feature_loudness(loudness, query_loudness):
    """Nearest by cosine: an identity whose features are loud (a bright, contrasty photo) does not win every query."""
    net = retrieval_net(5).eval()
    with torch.no_grad():
        features = net.encoder.features(images(5, seed=2))
        net.fill(features * torch.tensor(loudness)[:, None, None], random_targets(net, 5))
        torch.testing.assert_close(net.keys.norm(dim=-1), torch.ones(5))
        assert net.nearest(None, features=features * query_loudness).tolist() == [0, 1, 2, 3, 4]


def test_retrieval_bank_round_trips_through_a_file_and_refuses_a_wrong_count(tmp_path, lidb):
    net = retrieval_net(4, lidb).eval()
    stored = images(4, seed=3)
    targets = random_targets(net, 4)
    with torch.no_grad():
        net.fill(net.encoder.features(stored), targets)
    save_hypernet(tmp_path / "r.safetensors", net, adapter_seed=0)
    loaded = load_hypernet(tmp_path / "r.safetensors").eval()
    assert loaded.config.architecture == "retrieval" and loaded.config.bank_size == 4
    with torch.no_grad():
        again = loaded(stored[[2, 0, 3]], return_all=True)
    assert len(again) == 1
    assert_rows(again[0], targets, [2, 0, 3])
    with pytest.raises(LowdimError, match="holds 4 identities, got 2"):
        net.fill(torch.zeros(2, 5, net.encoder.width), targets)
    with pytest.raises(LowdimError, match="bank_size >= 1"):
        retrieval_net(0)


def test_a_float16_bank_halves_the_stored_values_and_predicts_within_fp16_rounding(tmp_path, lidb):
    nets = {dtype: retrieval_net(4, lidb, bank_dtype=dtype).eval() for dtype in ("float32", "float16")}
    stored = images(4, seed=3)
    targets = random_targets(nets["float32"], 4)
    sizes = {}
    for dtype, net in nets.items():
        with torch.no_grad():
            net.fill(net.encoder.features(stored), targets)
        save_hypernet(tmp_path / f"{dtype}.safetensors", net, adapter_seed=0)
        sizes[dtype] = sum(v.numel() * v.element_size() for k, v in net.state_dict().items() if "values" in k)
    assert sizes["float16"] * 2 == sizes["float32"]
    loaded = load_hypernet(tmp_path / "float16.safetensors").eval()
    assert loaded.config.bank_dtype == "float16"
    with torch.no_grad():
        predicted = loaded(stored[[1, 3, 0, 2]])
    assert {value.dtype for params in predicted.values() for value in params.values()} == {torch.float32}
    assert_rows(predicted, targets, [1, 3, 0, 2], rtol=1e-3, atol=1e-4)
    with pytest.raises(LowdimError, match=r"^HyperConfig\(bank_dtype=\.\.\.\) must be one of"):
        HyperConfig(architecture="retrieval", bank_size=1, bank_dtype="int8").validate()


def test_loading_a_pretrained_encoder_draws_no_bar_of_its_own(tmp_path, capfd):
    """transformers' "Loading weights" bar would cut into lowdim's progress display and logs."""
    from transformers.utils import logging as transformers_logging

    from lowdim.hyper.encoder import ImageEncoder

    transformers.ViTModel(vit_config()).save_pretrained(tmp_path / "vit")
    transformers_logging.enable_progress_bar()  # as in a program of its own, whatever ran before in this one
    capfd.readouterr()
    encoder = ImageEncoder(str(tmp_path / "vit"), None, out_width=8)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert encoder.features(torch.zeros(1, 3, 16, 16)).shape[0] == 1
    assert transformers_logging.is_progress_bar_enabled()  # put back for whoever else uses transformers
