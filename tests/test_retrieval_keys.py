"""Learned retrieval keys: the InfoNCE loss, the key projection's training, and the head that stores it."""

from __future__ import annotations

import math

import pytest
import torch
from hyper_groupings import lidb_over_groupings  # noqa: F401  (the lidb fixture: one shape group and three)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hyper import LAYERS, images, vit_config
from test_hyper_levers import assert_rows, random_targets

import lowdim
from lowdim.errors import LowdimError
from lowdim.hyper import HyperConfig, build_hypernet, load_hypernet, save_hypernet
from lowdim.hyper.retrieval_keys import KeyProjection, _two_photos, fit_key_projection, info_nce

pytest.importorskip("transformers")


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(2, 12), dim=st.integers(2, 16), seed=st.integers(0, 1000),
       temperature=st.floats(0.05, 2.0))
def test_info_nce_is_symmetric_and_bounded_by_chance_when_every_key_is_alike(rows, dim, seed, temperature):
    first, second = unit(rows, dim, seed), unit(rows, dim, seed + 1)
    loss = info_nce(first, second, temperature)
    torch.testing.assert_close(loss, info_nce(second, first, temperature))
    same = unit(1, dim, seed).expand(rows, dim)
    torch.testing.assert_close(info_nce(same, same, temperature), torch.tensor(math.log(rows)))
    # matching each row with itself never scores worse than chance
    assert info_nce(first, first, temperature) <= math.log(rows) + 1e-5


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(2, 12), dim=st.integers(2, 16), seed=st.integers(0, 1000),
       temperature=st.floats(0.05, 2.0))
def test_info_nce_is_the_mean_of_both_directions_cross_entropies_at_logits_over_the_temperature(rows, dim, seed,
                                                                                               temperature):
    """The temperature sets how sharply keys are told apart: training at 0.2 must not silently run at 1."""
    first, second = unit(rows, dim, seed).double(), unit(rows, dim, seed + 1).double()
    logits = first @ second.T / temperature
    matched = logits.diagonal()
    # -log softmax of the matching key, averaged: rows pick among `second`, columns among `first`
    by_row = (logits.logsumexp(dim=1) - matched).mean()
    by_column = (logits.logsumexp(dim=0) - matched).mean()
    torch.testing.assert_close(info_nce(first, second, temperature), (by_row + by_column) / 2)


@settings(max_examples=20, deadline=None)
@given(counts=st.lists(st.integers(2, 6), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_key_training_pairs_two_different_photos_of_a_person_and_every_ordered_pair_occurs(counts, seed):
    """A pair of the same photo twice would teach the keys nothing; each ordered pair is drawn alike."""
    repeats = 2000  # 30 ordered pairs of 6 photos: each missed with probability (29/30)^2000, about e^-68
    photos = torch.tensor(counts).repeat(repeats)
    first, second = _two_photos(photos, torch.Generator().manual_seed(seed))
    assert bool((first != second).all())
    assert bool(((first >= 0) & (first < photos) & (second >= 0) & (second < photos)).all())
    for person, count in enumerate(counts):
        drawn = set(zip(first[person::len(counts)].tolist(), second[person::len(counts)].tolist(), strict=True))
        assert drawn == {(i, j) for i in range(count) for j in range(count) if i != j}


def people(count: int, photos: int, seed: int) -> list[torch.Tensor]:
    """Features whose identity is in 4 quiet coordinates and whose nuisance is in 12 loud ones."""
    generator = torch.Generator().manual_seed(seed)
    faces = torch.randn(count, 1, 4, generator=generator)
    rows = []
    for face in faces:
        nuisance = 3 * torch.randn(photos, 12, generator=generator)
        rows.append(torch.cat([face.expand(photos, 4) + 0.05 * torch.randn(photos, 4, generator=generator),
                               nuisance], dim=1)[:, None])  # (photos, 1 token, 16)
    return rows


def test_learned_keys_find_the_person_where_raw_features_find_the_nuisance():
    train = people(300, 2, seed=0)
    projection = KeyProjection(16, 32, 8)
    fit = fit_key_projection(projection, train, steps=300, batch_size=64, learning_rate=3e-3, seed=0)
    assert fit.identities == 300 and fit.images == 600 and fit.pair_top1 > 0.5
    new = torch.cat(people(50, 2, seed=1))  # people never seen: photo 0 queries, photo 1 is the stored key
    query, stored = new[0::2], new[1::2]
    own = torch.arange(50)
    raw = torch.nn.functional.normalize(query[:, 0], dim=-1) @ torch.nn.functional.normalize(stored[:, 0], dim=-1).T
    with torch.no_grad():
        learned = projection(query) @ projection(stored).T
    raw_hits = (raw.argmax(1) == own).float().mean()
    learned_hits = (learned.argmax(1) == own).float().mean()
    assert learned_hits >= 0.8 > 0.3 >= raw_hits


def test_key_training_refuses_people_with_one_photo_and_features_of_another_size():
    with pytest.raises(LowdimError, match="two or more photos"):
        fit_key_projection(KeyProjection(16, 8, 4), [torch.zeros(2, 1, 16), torch.zeros(1, 1, 16)], steps=1)
    with pytest.raises(LowdimError, match="reads 16 feature values per image, got 80"):
        KeyProjection(16, 8, 4)(torch.zeros(3, 5, 16))


def keyed_net(count: int, pool: int = 2, space: lowdim.Space | None = None):
    torch.manual_seed(0)
    config = HyperConfig(architecture="retrieval", encoder_config=vit_config(), bank_size=count, key_dim=8,
                         key_hidden=16, encoder_pool=pool)
    return build_hypernet(config, space or lowdim.get_space("lidb", a=6, b=5), LAYERS).eval()


def test_a_keyed_bank_reads_the_pooled_grid_and_round_trips_with_its_projection(tmp_path, lidb):
    net = keyed_net(4, space=lidb)
    stored = images(4, seed=3)
    targets = random_targets(net, 4)
    with torch.no_grad():
        features = net.encoder.features(stored)
        net.fill(features, targets)
    assert net.keys.shape == (4, 8) and net.key_input(features).shape[1] == 5  # CLS + 2x2 grid
    # already pooled features (as a --features file stores them) give the same keys
    torch.testing.assert_close(net.key(net.encoder.pooled(features)), net.keys)
    save_hypernet(tmp_path / "k.safetensors", net, adapter_seed=0)
    loaded = load_hypernet(tmp_path / "k.safetensors").eval()
    assert loaded.config.key_dim == 8 and loaded.key_projection is not None
    with torch.no_grad():
        again = loaded(stored[[2, 0]])
    assert_rows(again, targets, [2, 0])  # every layer of every shape group: its own stored θ
    with pytest.raises(LowdimError, match=r"^HyperConfig\(key_dim=\.\.\.\) must be an integer >= 0"):
        HyperConfig(architecture="retrieval", bank_size=1, key_dim=-1).validate()


def test_render_keys_average_each_reference_with_what_its_weights_render():
    net = keyed_net(3)
    stored = images(3, seed=3)
    with torch.no_grad():
        features = net.encoder.features(stored)
        net.fill(features, random_targets(net, 3))
        by_reference = net.keys.clone()
        renders = net.encoder.features(images(6, seed=9)).view(3, 2, *features.shape[1:])
        net.add_render_keys(renders)
    rendered = torch.nn.functional.normalize(torch.stack([net.key(renders[:, r]) for r in range(2)], 1).mean(1), dim=-1)
    torch.testing.assert_close(net.keys, torch.nn.functional.normalize(by_reference + rendered, dim=-1))
    torch.testing.assert_close(net.keys.norm(dim=-1), torch.ones(3))
    with pytest.raises(LowdimError, match="render features for 2 identities; the bank holds 3"):
        net.add_render_keys(renders[:2])
