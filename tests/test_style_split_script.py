"""benchmarks/tinyfaces_style_split.py: identity split by whether each image took its prompt's style."""

from __future__ import annotations

import json
import math

import numpy as np
import script_loader


def load_script():
    return script_loader.load_script("benchmarks/tinyfaces_style_split.py")


def test_split_averages_identity_separately_over_styled_and_plain_images():
    script = load_script()
    identity = np.array([[0.9, 0.1], [0.5, 0.7], [0.1, 0.3]])
    style = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, np.nan]])  # a miss (NaN) counts as not styled
    (share0, styled0, plain0), (share1, styled1, plain1) = script.split(identity, style)
    assert (share0, styled0, plain0) == (2 / 3, 0.7, 0.1)
    assert share1 == 0.0 and math.isnan(styled1) and math.isclose(plain1, (0.1 + 0.7 + 0.3) / 3)


def test_it_reads_a_bench_folder_and_prints_one_line_per_prompt(tmp_path, capsys):
    script = load_script()
    (tmp_path / "settings.json").write_text(json.dumps({"prompts": ["a photo of a [V] face", "a [V] face at night"]}))
    rows = tmp_path / "results" / "ours"
    rows.mkdir(parents=True)
    for k, night in enumerate([1.0, 0.0]):
        scores = {"tinyfaces-identity": [0.6, 0.2 + 0.4 * k], "tinyfaces-style": [1.0, night]}
        (rows / f"id-{k}.json").write_text(json.dumps({"scores": scores}))
    script.main(str(tmp_path), ["ours"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:] == ["| ours | a photo of a [V] face | 1.00 | 0.60 | nan |",
                         "| ours | a [V] face at night | 0.50 | 0.20 | 0.60 |"]
