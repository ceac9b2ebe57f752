"""benchmarks/bank_values.py: one bank's keys with another's θ of the same identities, and the paired
differences the ladder reports (rung 20)."""

from __future__ import annotations

import json
import math

import pytest
import script_loader
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn


def load_script():
    return script_loader.load_script("benchmarks/bank_values.py")


def bank(rows: int, seed: int) -> nn.Module:
    """A stand-in for a retrieval head: keys and two value groups, as the head stores them."""
    net = nn.Module()
    generator = torch.Generator().manual_seed(seed)
    net.register_buffer("keys", torch.randn(rows, 3, generator=generator))
    net.register_buffer("values0", torch.randn(rows, 2, 5, generator=generator))
    net.register_buffer("values1", torch.randn(rows, 1, 4, generator=generator).half())
    return net


def test_swapped_values_follow_the_names_and_the_keys_stay():
    script = load_script()
    target, donor = bank(3, 0), bank(5, 1)
    keys = target.keys.clone()
    script.swap_values(target, ["b", "e", "a"], donor, {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4})
    assert torch.equal(target.keys, keys)
    assert torch.equal(target.values0, donor.values0[[1, 4, 0]])
    assert torch.equal(target.values1, donor.values1[[1, 4, 0]])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=2, max_size=20))
def test_paired_is_the_mean_and_standard_error_of_the_differences(pairs):
    script = load_script()
    first = {f"id{i}": a for i, (a, _) in enumerate(pairs)}
    second = {f"id{i}": b for i, (_, b) in enumerate(pairs)} | {"only-here": 5.0}
    mean, error, count = script.paired(first, second)
    diffs = torch.tensor([a - b for a, b in pairs], dtype=torch.float64)
    assert count == len(pairs)
    assert math.isclose(mean, float(diffs.mean()), abs_tol=1e-9)
    assert math.isclose(error, float(diffs.std() / math.sqrt(len(pairs))), abs_tol=1e-9)


def test_identity_means_leave_out_pictures_a_metric_asked_nothing_of(tmp_path):
    script = load_script()
    folder = tmp_path / "results" / "only-hyper"
    folder.mkdir(parents=True)
    (folder / "id-1.json").write_text(json.dumps({"identity": "id-1", "scores": {
        "tinyfaces-style": [1.0, None, 0.0], "tinyfaces-identity": [0.2, 0.4]}}))
    (folder / "id-2.json").write_text(json.dumps({"identity": "id-2", "scores": {"tinyfaces-style": [None]}}))
    assert script.identity_means(str(tmp_path), "only-hyper", "tinyfaces-style") == {"id-1": 0.5}
    assert script.identity_means(str(tmp_path), "only-hyper", "tinyfaces-identity") == {"id-1": pytest.approx(0.3)}
