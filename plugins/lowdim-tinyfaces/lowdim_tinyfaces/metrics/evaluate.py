"""Held-out evaluation of the metric models (used by ``train`` and the tests).

Verification protocol on held-out identities: for each identity ``i`` of a
split we render an anchor A (style a), a same-style positive (style a, new
nuisance), a cross-style positive (style != a), a same-style negative (another
held-out identity j in style a), a cross-style negative (identity j, style !=
a) and a near-miss negative (identity i with one factor changed, any style).
A threshold on cosine similarity is chosen on the validation split (balanced
positives / negatives) and accuracies are measured on the test split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..identity import CARDINALITIES, FACTOR_NAMES
from ..styles import STYLES
from ..world import render_tensor
from .data import degrade, other_styles, sample_levels, seeds
from .identity import IdentityEncoder
from .style import StyleClassifier


def _maybe_degrade(x: Tensor, degraded: bool, seed: int) -> Tensor:
    return degrade(x, torch.Generator().manual_seed(seed)) if degraded else x


def verification_pairs(
    encoder: IdentityEncoder, n: int, split: int, seed: int, degraded: bool = False
) -> dict[str, np.ndarray]:
    """Similarity scores for each pair kind, ``n`` pairs per kind."""
    rng = np.random.default_rng(seed)
    lv = sample_levels(n, rng, split)
    partner = lv[np.roll(np.arange(n), 1)]
    near = lv.copy()
    which = rng.integers(0, len(CARDINALITIES), n)
    near[np.arange(n), which] = (
        lv[np.arange(n), which] + rng.integers(1, CARDINALITIES[which])
    ) % CARDINALITIES[which]
    a = rng.integers(0, len(STYLES), n)
    views = {
        "anchor": (lv, a),
        "pos_same_style": (lv, a),
        "pos_cross_style": (lv, other_styles(a, rng)),
        "neg_same_style": (partner, a),
        "neg_cross_style": (partner, other_styles(a, rng)),
        "neg_one_factor": (near, rng.integers(0, len(STYLES), n)),
    }
    emb = {}
    for k, (levels, styles) in enumerate(views.values()):
        x = render_tensor(levels, list(styles), seeds(n, rng))
        emb[list(views)[k]] = encoder.embed(_maybe_degrade(x, degraded, seed + k))
    anchor = emb.pop("anchor")
    return {k: encoder.similarity(anchor, v).numpy() for k, v in emb.items()}


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    """Threshold maximising balanced accuracy of ``score >= t`` for pos vs neg."""
    cands = np.unique(np.concatenate([pos, neg]))
    mids = (cands[:-1] + cands[1:]) / 2 if len(cands) > 1 else cands
    acc = [(np.mean(pos >= t) + np.mean(neg < t)) / 2 for t in mids]
    return float(mids[int(np.argmax(acc))])


def balanced_accuracy(pos: np.ndarray, neg: np.ndarray, t: float) -> float:
    return float((np.mean(pos >= t) + np.mean(neg < t)) / 2)


def verification_report(
    encoder: IdentityEncoder, n: int = 1000, seed: int = 0, degraded: bool = False
) -> dict:
    val = verification_pairs(encoder, n, 1, seed, degraded)
    test = verification_pairs(encoder, n, 2, seed + 1, degraded)
    vpos = np.concatenate([val["pos_same_style"], val["pos_cross_style"]])
    vneg = np.concatenate([val["neg_same_style"], val["neg_cross_style"]])
    t = best_threshold(vpos, vneg)
    tpos = np.concatenate([test["pos_same_style"], test["pos_cross_style"]])
    tneg = np.concatenate([test["neg_same_style"], test["neg_cross_style"]])
    return {
        "threshold": t,
        "accuracy": balanced_accuracy(tpos, tneg, t),
        "same_style_accuracy": balanced_accuracy(test["pos_same_style"], test["neg_same_style"], t),
        "cross_style_accuracy": balanced_accuracy(
            test["pos_cross_style"], test["neg_cross_style"], t
        ),
        "one_factor_negative_rejection": float(np.mean(test["neg_one_factor"] < t)),
        "mean_similarity": {k: float(v.mean()) for k, v in test.items()},
        "pairs_per_kind": n,
    }


def factor_accuracy(
    encoder: IdentityEncoder, n: int = 2000, split: int = 2, seed: int = 0, degraded: bool = False
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    lv = sample_levels(n, rng, split)
    x = render_tensor(lv, list(rng.integers(0, len(STYLES), n)), seeds(n, rng))
    pred = encoder.predict_factors(_maybe_degrade(x, degraded, seed)).numpy()
    acc = {name: float(np.mean(pred[:, k] == lv[:, k])) for k, name in enumerate(FACTOR_NAMES)}
    acc["all_factors"] = float(np.mean((pred == lv).all(1)))
    return acc


def style_accuracy(
    classifier: StyleClassifier,
    n_per_style: int = 300,
    split: int = 2,
    seed: int = 0,
    degraded: bool = False,
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n = n_per_style * len(STYLES)
    lv = sample_levels(n, rng, split)
    styles = np.repeat(np.arange(len(STYLES)), n_per_style)
    x = render_tensor(lv, list(styles), seeds(n, rng))
    pred = classifier.predict(_maybe_degrade(x, degraded, seed)).numpy()
    acc = {name: float(np.mean(pred[styles == k] == k)) for k, name in enumerate(STYLES)}
    acc["overall"] = float(np.mean(pred == styles))
    return acc
