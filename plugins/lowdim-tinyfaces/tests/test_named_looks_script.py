"""benchmarks/tinyfaces_named_looks.py: how often a base model draws the looks its prompt names, per style."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("diffusers")

from lowdim_tinyfaces.identity import CARDINALITIES, FACTOR_NAMES  # noqa: E402
from lowdim_tinyfaces.styles import STYLES  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "tinyfaces_named_looks.py"


script = SimpleNamespace(**runpy.run_path(str(SCRIPT)))  # its functions, without running main()
levels_strategy = st.lists(
    st.lists(st.integers(0, 10**6), min_size=len(FACTOR_NAMES), max_size=len(FACTOR_NAMES)), min_size=1, max_size=8,
).map(lambda rows: np.array(rows) % CARDINALITIES)


@given(levels_strategy, st.data())
def test_read_back_counts_the_named_looks_each_image_got_right(levels, data):
    flags = data.draw(st.lists(st.booleans(), min_size=levels.size, max_size=levels.size))
    wrong = np.array(flags).reshape(levels.shape)
    predicted = np.where(wrong, (levels + 1) % CARDINALITIES, levels)
    accuracy = script.read_back(predicted, levels)
    columns = [FACTOR_NAMES.index(name) for name in script.NAMED]
    np.testing.assert_allclose(accuracy, 1.0 - wrong[:, columns].mean(axis=0))
    np.testing.assert_array_equal(script.read_back(levels, levels), np.ones(len(script.NAMED)))


def test_named_prompts_say_every_look_and_plain_ones_none():
    levels = np.zeros((2, len(FACTOR_NAMES)), dtype=np.int64)
    levels[:, FACTOR_NAMES.index("hair_colour")] = 4
    levels[:, FACTOR_NAMES.index("hair_style")] = 4
    levels[:, FACTOR_NAMES.index("glasses")] = 1
    night = STYLES.index("night")
    named = script.prompts_for(levels, night, plain=False)
    assert all("ginger long hair" in p and "round glasses" in p and p.endswith("at night") for p in named)
    assert script.prompts_for(levels, night, plain=True) == ["a face at night"] * 2


def test_renders_read_back_near_the_ceiling_and_the_mean_row_averages_the_styles(capsys):
    per_style = script.measure("renders", 6)
    assert list(per_style) == list(STYLES)
    accuracy, identity = per_style["photo"]
    assert identity > 0.8 and accuracy[script.NAMED.index("hair_style")] >= 0.8
    lines = script.summary(per_style)
    assert len(lines) == 2 + len(STYLES) + 1
    mean_identity = float(lines[-1].split("|")[-2])
    assert mean_identity == pytest.approx(np.mean([i for _, i in per_style.values()]), abs=1e-3)


@pytest.mark.slow
def test_the_shipped_model_is_asked_for_its_looks_and_a_wrong_folder_is_refused(tmp_path, capsys):
    # The path from the model's name to the table is checked, not how close 25 steps bring the images
    # (test_renders_... checks the read-back): 2 steps of one identity.
    script.main(["tinyfaces", "--count", "1", "--threads", "1", "--steps", "2"])
    rows = capsys.readouterr().out.splitlines()
    assert [row.split(" | ")[0] for row in rows[2:]] == [f"| {s}" for s in STYLES] + ["| mean"]
    with pytest.raises(SystemExit):
        script.main([str(tmp_path)])
    error = capsys.readouterr().err
    assert "no model_index.json" in error and str(tmp_path) in error
