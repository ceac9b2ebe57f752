"""A feature file from a stranger (review BN3, BN7): NaN or Inf features, keys that are not image keys, or a token
count the network's pooling cannot give are one line naming the file, never a traceback or a NaN loss."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lowdim.errors import LowdimError
from lowdim.hyper import HyperConfig, build_hypernet
from lowdim_sd.feature_file import StoredFeatures, check_covers, compute_features, save_features
from lowdim_sd.file_info_parts import FileInfo
from lowdim_sd.weight_dataset import WeightDataset

TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32}
FROZEN = {"encoder_config": TINY_VIT, "width": 16, "attention_heads": 2, "iterations": 2, "freeze_encoder": True}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("featurechecks"), "w", 2, seed=7, steps=1)


def written(weights, path, pool: int = 2):
    data = WeightDataset(weights)
    torch.manual_seed(0)
    net = build_hypernet(HyperConfig.from_dict({**FROZEN, "encoder_pool": pool}), data.space, data.layers)
    keys, features = compute_features(net.encoder, (data.image(item) for item in range(len(data))))
    return save_features(path, net.encoder, keys, features), net.encoder, data


def rewrite(path, features=None, keys=None) -> None:
    with safe_open(str(path), framework="pt") as handle:
        metadata, stored = handle.metadata(), handle.get_tensor("features")
    metadata = {**metadata, **({"keys": json.dumps(keys)} if keys is not None else {})}
    save_file({"features": stored if features is None else features(stored)}, str(path), metadata)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_features_are_refused_naming_the_file(weights, tmp_path, value):
    path, encoder, _ = written(weights, tmp_path / "f.safetensors")
    rewrite(path, features=lambda f: f.index_fill(0, torch.tensor([1]), value))
    with pytest.raises(LowdimError, match=r"f.safetensors: tensor 'features' holds NaN or Inf values; refusing it"):
        StoredFeatures(path, encoder)


@pytest.mark.parametrize(("keys", "said"), [
    ([{}, {}], r"its image keys are not a list of distinct keys \(20 hex characters, as lowdim encoder-features"),
    ([1, 2], r"its image keys are not a list of distinct keys"),
    (["a" * 20, "a" * 20], r"its image keys are not a list of distinct keys"),
])
def test_keys_that_are_not_image_keys_are_one_line(weights, tmp_path, keys, said):
    path, encoder, data = written(weights, tmp_path / "f.safetensors")
    rewrite(path, keys=keys)
    with pytest.raises(LowdimError, match=said):
        StoredFeatures(path, encoder)
    with pytest.raises(LowdimError, match=said):
        check_covers(path, {data.image_path(0): lambda: data.image(0)}, "recompute them")


@pytest.mark.parametrize(("tokens", "said"), [(1, "1 token"), (500, "500 tokens")])
def test_a_token_count_the_pooling_cannot_give_is_one_line_naming_the_file(weights, tmp_path, tokens, said):
    path, encoder, _ = written(weights, tmp_path / "f.safetensors")
    rewrite(path, features=lambda f: torch.zeros(len(f), tokens, f.shape[-1], dtype=f.dtype))
    with pytest.raises(LowdimError, match=rf"f.safetensors: its features hold {said} per image; encoder_pool 2 "
                                          rf"gives 5 \(1 \+ 2x2\)"):
        StoredFeatures(path, encoder)


def test_unpooled_features_must_have_the_encoders_own_token_count(weights, tmp_path):
    path, encoder, _ = written(weights, tmp_path / "f.safetensors", pool=0)
    assert len(StoredFeatures(path, encoder)) == 2  # 1 + (16/4)^2 = 17 tokens: as the encoder gives them
    rewrite(path, features=lambda f: f[:, :5].clone())
    with pytest.raises(LowdimError, match=r"its features hold 5 tokens per image; this encoder gives 17"):
        StoredFeatures(path, encoder)


def test_show_prints_a_value_that_is_not_printable_escaped():
    info = FileInfo("x.safetensors", "a lowdim adapter", [("token", "sk\x1b[31ms"), ("space", "lidb {}")],
                    type="adapter")
    assert dict(info.rows) == {"token": r"'sk\x1b[31ms'", "space": "lidb {}"}
    assert info.as_dict()["fields"]["token"] == "sk\x1b[31ms"  # --json keeps the value: JSON escapes it itself
