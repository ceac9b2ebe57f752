"""Evaluate's progress bar says what it counts (review FAF2): one metric on one picture is a score, not a step."""

from __future__ import annotations

from pathlib import Path

import pytest

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


def test_the_scoring_bar_counts_scores(tmp_path):
    from gradio_bar import Bar  # tests/sd, on the path as pytest puts it

    from lowdim_sd.eval.job import TINYFACES_METRICS
    from lowdim_sd.ui.page_parts import progress_listener
    from lowdim_sd.ui.studio import Studio, StudioConfig

    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    bar = Bar()
    pictures = [str(FACE)] * 3
    studio.evaluate(pictures, FACE, "a photo of a [V] face", "sks", ",".join(TINYFACES_METRICS),
                    progress_listener(bar))  # type: ignore[arg-type]  # what Gradio's gr.Progress is called with
    counted = [bar.words(call) for call in range(len(bar.calls)) if bar.words(call).startswith("scoring ")]
    assert counted and all(words.endswith(" scores") for words in counted)
    scores = len(TINYFACES_METRICS) * len(pictures)  # each metric on each picture
    assert counted[-1] == f"scoring {scores}/{scores} scores"
