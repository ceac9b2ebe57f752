"""benchmarks/tinyfaces_looks_kept.py: a picture keeps the looks only when all four read back, in the style asked."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

from lowdim_tinyfaces.folders import write_identities  # noqa: E402
from lowdim_tinyfaces.identity import FACTOR_NAMES  # noqa: E402
from lowdim_tinyfaces.styles import STYLES, prompt_for  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "tinyfaces_looks_kept.py"
script = SimpleNamespace(**runpy.run_path(str(SCRIPT)))


def test_one_wrong_look_loses_the_picture_and_other_factors_do_not_count():
    levels = np.zeros((3, len(FACTOR_NAMES)), dtype=np.int64)
    predicted = levels.copy()
    predicted[1, FACTOR_NAMES.index("glasses")] = 2  # one of the four looks wrong
    predicted[2, FACTOR_NAMES.index("nose")] = 1  # a factor the preview does not promise
    assert script.looks_kept(predicted, levels).tolist() == [True, False, True]


class Reader:
    """Reads every picture as the first identity's levels, whatever it shows."""

    def __init__(self, levels: np.ndarray) -> None:
        self.levels = levels

    def predict_factors(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.repeat(self.levels[None], len(images), axis=0))


def test_a_row_table_splits_each_style_by_the_style_verdict(tmp_path):
    identities = tmp_path / "ids"
    write_identities(identities, 2, split="test")
    prompts = [prompt_for(style, "[V] face") for style in STYLES]
    bench = tmp_path / "bench"
    (bench / "results" / "row").mkdir(parents=True)
    (bench / "settings.json").write_text(json.dumps({"prompts": prompts}))
    for number, name in enumerate(("id-00000", "id-00001")):
        folder = bench / "images" / "row" / name
        folder.mkdir(parents=True)
        for k in range(len(prompts)):
            Image.new("RGB", (32, 32)).save(folder / f"{k:02d}.png")
        took = [1.0 if number == 0 else 0.0] * len(prompts)  # the first identity's pictures took every style
        (bench / "results" / "row" / f"{name}.json").write_text(json.dumps(
            {"identity": name, "scores": {"tinyfaces-style": took}}))
    levels = json.loads((identities / ".identities.json").read_text())["identities"]
    table = script.row_table(bench, identities, "row", Reader(np.array(levels["id-00000"])))
    assert list(table) == list(STYLES)
    # styled: half the pictures; within: the styled one reads as its identity; both: half of all pictures
    assert table["night"] == (0.5, 1.0, 0.5)
    misread = script.row_table(bench, identities, "row", Reader(np.array(levels["id-00001"])))
    assert misread["night"] == (0.5, 0.0, 0.0)  # every picture read as the second identity's looks


def test_the_renders_row_needs_no_results_and_its_photos_read_back_as_the_identity(tmp_path):
    from lowdim_tinyfaces.metrics import load_identity_encoder

    identities = tmp_path / "ids"
    write_identities(identities, 4, split="test")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "settings.json").write_text(json.dumps({"prompts": [prompt_for(s, "[V] face") for s in STYLES]}))
    table = script.row_table(bench, identities, script.CEILING, load_identity_encoder())
    assert all(styled == 1.0 for styled, _, _ in table.values())  # renders are in the style by construction
    assert table["photo"][1] >= 0.5  # the metric's own encoder reads most rendered photos back right
    with pytest.raises(SystemExit, match="no results for 'ours'"):
        script.row_table(bench, identities, "ours", load_identity_encoder())


def test_a_bench_folder_without_its_pictures_is_one_line_naming_the_folder(tmp_path):
    """Session archives hold results and settings but no images: say so before loading anything."""
    identities = tmp_path / "ids"
    write_identities(identities, 1, split="test")
    bench = tmp_path / "bench"
    (bench / "results" / "ours").mkdir(parents=True)
    (bench / "settings.json").write_text(json.dumps({"prompts": [prompt_for(s, "[V] face") for s in STYLES]}))
    (bench / "results" / "ours" / "id-00000.json").write_text(json.dumps(
        {"identity": "id-00000", "scores": {"tinyfaces-style": [1.0] * len(STYLES)}}))
    done = subprocess.run([sys.executable, str(SCRIPT), str(bench), str(identities), "renders", "ours"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(bench / "images" / "ours") in done.stderr and "pictures" in done.stderr
    assert done.stdout == ""  # nothing printed for the ceiling row before the refusal


@pytest.mark.parametrize("missing", ["settings.json", ".identities.json"])
def test_a_missing_settings_or_identities_index_is_one_line_naming_it(tmp_path, missing):
    identities = tmp_path / "ids"
    bench = tmp_path / "bench"
    bench.mkdir()
    if missing == "settings.json":
        write_identities(identities, 1, split="test")
    else:
        identities.mkdir()
        (bench / "settings.json").write_text(json.dumps({"prompts": [prompt_for("photo", "[V] face")]}))
    with pytest.raises(SystemExit, match=f"{missing}.*"):
        script.main([str(bench), str(identities), "renders"])
