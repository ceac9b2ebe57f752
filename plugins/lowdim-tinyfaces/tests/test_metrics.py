"""The committed metric models: identity encoder and style classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lowdim_tinyfaces import CARDINALITIES, STYLES, render_tensor
from lowdim_tinyfaces.metrics import (
    IdentityEncoder,
    StyleClassifier,
    evaluate,
    load_identity_encoder,
    load_style_classifier,
)
from lowdim_tinyfaces.metrics.data import sample_levels, split_of
from lowdim_tinyfaces.metrics.nets import WEIGHTS_DIR

# Measured on held-out test identities (docs/metrics.md) minus a margin.
MIN_VERIFICATION_ACCURACY = 0.90
MIN_STYLE_ACCURACY = 0.95


@pytest.fixture(scope="module")
def encoder() -> IdentityEncoder:
    torch.set_num_threads(1)
    return load_identity_encoder()


@pytest.fixture(scope="module")
def classifier() -> StyleClassifier:
    return load_style_classifier()


def test_weight_files_are_small_safetensors() -> None:
    for name in ("identity_encoder", "style_classifier"):
        path = WEIGHTS_DIR / f"{name}.safetensors"
        raw = path.read_bytes()
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
        assert header["__metadata__"]["format"] == "pt"
        assert path.stat().st_size < 2_000_000
        config = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        assert "model" in config


def test_loading_is_deterministic(encoder: IdentityEncoder) -> None:
    x = render_tensor(np.zeros((4, len(CARDINALITIES)), np.int64), list(range(4)), [1, 2, 3, 4])
    again = load_identity_encoder()
    assert torch.equal(encoder.embed(x), again.embed(x))
    c1, c2 = load_style_classifier(), load_style_classifier()
    assert torch.equal(c1.probs(x), c2.probs(x))
    assert not encoder.training


def test_encoder_recovers_identity_across_styles(encoder: IdentityEncoder) -> None:
    sims = evaluate.verification_pairs(encoder, n=200, split=2, seed=1234)
    assert {kind: score.shape for kind, score in sims.items()} == {kind: (200,) for kind in sims}  # one per pair
    pos = sims["pos_cross_style"]
    neg = np.concatenate([sims["neg_cross_style"], sims["neg_same_style"]])
    assert pos.mean() - neg.mean() > 0.3
    assert evaluate.balanced_accuracy(pos, neg, encoder.threshold) >= MIN_VERIFICATION_ACCURACY


def test_encoder_predicts_factors(encoder: IdentityEncoder) -> None:
    # Coarse factors are read reliably; tiny ones (nose, brows, eye colour) are not.
    acc = evaluate.factor_accuracy(encoder, n=200, seed=99)
    for name in ("skin_tone", "hair_style", "glasses", "eye_spacing"):
        assert acc[name] > 0.8, (name, acc[name])
    assert acc["hair_colour"] > 0.6


def test_style_classifier_on_heldout_identities(classifier: StyleClassifier) -> None:
    acc = evaluate.style_accuracy(classifier, n_per_style=40, seed=4321)
    assert acc["overall"] >= MIN_STYLE_ACCURACY
    assert min(acc[s] for s in STYLES) >= MIN_STYLE_ACCURACY - 0.05


def test_heldout_split() -> None:
    rng = np.random.default_rng(0)
    lv = sample_levels(50, rng, 2)
    assert (split_of(lv) == 2).all()
    frac = np.mean(split_of(rng.integers(0, CARDINALITIES, (20_000, len(CARDINALITIES)))) > 0)
    assert 0.08 < frac < 0.12


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_embeddings_unit_norm_and_batch_independent(
    encoder: IdentityEncoder, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    lv = rng.integers(0, CARDINALITIES, (n, len(CARDINALITIES)))
    x = render_tensor(lv, list(rng.integers(0, len(STYLES), n)), rng.integers(0, 2**40, n))
    batched = encoder.embed(x)
    looped = torch.cat([encoder.embed(x[i : i + 1]) for i in range(n)])
    assert batched.shape == (n, encoder.config["embedding_dim"])
    torch.testing.assert_close(batched.norm(dim=1), torch.ones(n), atol=1e-5, rtol=0)
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=1e-4)
    partner = looped.roll(1, 0)  # each row against another image's embedding, not its own
    torch.testing.assert_close(encoder.similarity(3 * batched, partner), (batched * partner).sum(1))  # row cosine
