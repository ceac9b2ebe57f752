"""Evaluate's progress bar says what it counts (review FAF2): one metric on one picture is a score, not a step."""

from __future__ import annotations

from pathlib import Path

import pytest

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


class Bar:
    """Gradio's progress bar as a handler receives it: what each call set."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, str | None, str]] = []

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.calls.append((progress, desc, unit))


def test_the_scoring_bar_counts_scores(tmp_path):
    from lowdim_sd.eval.job import TINYFACES_METRICS
    from lowdim_sd.ui.page_parts import progress_listener
    from lowdim_sd.ui.studio import Studio, StudioConfig

    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    bar = Bar()
    pictures = [str(FACE)] * 3
    studio.evaluate(pictures, FACE, "a photo of a [V] face", "sks", ",".join(TINYFACES_METRICS),
                    progress_listener(bar))  # type: ignore[arg-type]  # what Gradio's gr.Progress is called with
    counted = [(done, desc, unit) for done, desc, unit in bar.calls if isinstance(done, tuple)]
    assert counted and {(desc, unit) for _, desc, unit in counted} == {("scoring", "scores")}
    assert counted[-1][0] == (len(TINYFACES_METRICS) * len(pictures),) * 2  # each metric on each picture
