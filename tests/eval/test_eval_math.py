"""The aggregation every metric and report shares: cosine, mean over references, summaries, [V] removal."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lowdim.metrics import Sample, cosine, mean_cosine, summarize

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=64)
vectors = st.integers(1, 8).flatmap(lambda n: st.tuples(st.lists(finite, min_size=n, max_size=n),
                                                         st.lists(finite, min_size=n, max_size=n)))


def _norm(v) -> float:
    return float(np.linalg.norm(np.asarray(v, dtype=np.float64)))


@given(vectors)
def test_cosine_is_symmetric_and_bounded(pair):
    a, b = pair
    assert cosine(a, b) == pytest.approx(cosine(b, a), abs=1e-12)
    assert -1.0 <= cosine(a, b) <= 1.0


@given(vectors, st.floats(min_value=1e-3, max_value=1e3))
def test_cosine_ignores_positive_scale_and_flips_with_sign(pair, scale):
    a, b = pair
    assume(_norm(a) > 1e-3 and _norm(b) > 1e-3)
    assert cosine(np.multiply(a, scale), b) == pytest.approx(cosine(a, b), abs=1e-9)
    assert cosine(np.negative(a), b) == pytest.approx(-cosine(a, b), abs=1e-9)


@given(st.lists(finite, min_size=1, max_size=8))
def test_cosine_of_a_vector_with_itself_is_one_and_with_zeros_is_zero(v):
    assume(_norm(v) > 1e-3)
    assert cosine(v, v) == pytest.approx(1.0, abs=1e-12)
    assert cosine(v, np.zeros(len(v))) == 0.0


def test_cosine_flattens_and_rejects_different_sizes():
    assert cosine(np.eye(2), np.eye(2).ravel()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="different sizes"):
        cosine([1.0, 2.0], [1.0, 2.0, 3.0])


@given(st.lists(finite, min_size=3, max_size=3), st.lists(st.lists(finite, min_size=3, max_size=3), max_size=5))
def test_mean_cosine_is_the_mean_over_references(query, references):
    got = mean_cosine(query, references)
    if not references:
        assert got is None
    else:
        assert got == pytest.approx(sum(cosine(query, r) for r in references) / len(references), abs=1e-12)
        each = [cosine(query, r) for r in references]
        assert min(each) - 1e-12 <= got <= max(each) + 1e-12


scores = st.lists(st.one_of(st.none(), st.floats(min_value=-1, max_value=1), st.just(math.nan)), max_size=20)


@given(scores)
def test_summary_counts_misses_and_averages_the_rest(values):
    summary = summarize(values)
    kept = [v for v in values if v is not None and not math.isnan(v)]
    assert summary.scored == len(kept) and summary.misses == len(values) - len(kept)
    if kept:
        assert summary.mean == pytest.approx(sum(kept) / len(kept), abs=1e-12)
        assert min(kept) - 1e-12 <= summary.mean <= max(kept) + 1e-12
    else:
        assert summary.mean is None


@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(min_value=-1, max_value=1), st.just(math.nan)),
                          st.booleans()), max_size=20))
def test_samples_not_asked_are_neither_scores_nor_misses(pairs):
    values, asked = [v for v, _ in pairs], [a for _, a in pairs]
    summary = summarize(values, asked)
    mine = summarize([v for v, a in pairs if a])
    assert (summary.mean, summary.scored, summary.misses) == (mine.mean, mine.scored, mine.misses)
    assert summary.not_asked == asked.count(False)
    assert summary.scored + summary.misses + summary.not_asked == len(values)


def test_asked_flags_must_match_the_scores():
    with pytest.raises(ValueError, match="2 scores but 1 asked"):
        summarize([0.5, None], [True])


@given(scores, st.permutations(list(range(20))))
def test_summary_does_not_depend_on_order(values, order):
    shuffled = [values[i] for i in order if i < len(values)]
    a, b = summarize(values), summarize(shuffled)
    assert (a.scored, a.misses) == (b.scored, b.misses)
    assert (a.mean is None and b.mean is None) or a.mean == pytest.approx(b.mean, abs=1e-12)


@pytest.mark.parametrize(("prompt", "token", "clean"), [
    ("a sks face at night", "sks", "a face at night"),
    ("a photo of sks, smiling", "sks", "a photo of smiling"),
    ("a [V] face", "[V]", "a face"),
    ("a sks face", None, "a sks face"),
    ("a sksy face", "sks", "a sksy face"),  # only whole words are the identifier
])
def test_clean_prompt_removes_only_the_identifier(prompt, token, clean):
    assert Sample(image=None, references=(), prompt=prompt, token=token).clean_prompt() == clean
