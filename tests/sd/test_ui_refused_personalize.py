"""A Personalize click the page refuses for a bad value (a number out of range or not whole, no photo) before any
job starts leaves the run shown as it is, as a Busy refusal does, with only its one-line error (task FAN): a run
running meanwhile, another tab's or its own, is not wiped from the page by a mistyped field. A run that started and
then failed still clears it (review FAF1), so no earlier run sits under its error. Driven as Gradio's front end
drives the page, in-process: the events a click triggers, then those chained after each one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ui_events

from lowdim.errors import LowdimError
from lowdim_sd.ui.studio import Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = str(Path(__file__).resolve().parents[2] / "examples" / "face.png")
NAME = "20260101-120000-face"
# The run shown, by elem_id (None: what Draw draws, a state with no id), as an Open of NAME left the page.
SHOWN = {"gallery": [("/runs/00.png", "reference")], "downloads": ["/runs/a.lowdim.safetensors"],
         "stages": f"<p>Run {NAME} done</p>", "earlier": NAME, None: {"run": NAME}, "draw-prompt": "a [V] face",
         "drawing": f"Draw draws run {NAME}", "adapter-file": None, "job-line": ""}
# The run settings, by elem_id, as the page starts (a photo dropped).
ASKED = {"photo": FACE, "model": "tinyfaces", "use-hyper": True, "steps": 1, "rank": 4, "seed": 0,
         "preview-steps": 1, "face": 0}


@pytest.fixture
def studio(tmp_path) -> Studio:
    return Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))


@pytest.fixture
def another_run(studio) -> Iterator[None]:
    """Another tab's run, holding the one job slot while the test clicks."""
    with ui_events.another_tab_running(studio):
        yield


def clicked(studio: Studio, asked: dict) -> tuple[dict, list[str]]:
    """The page after a click on Personalize, a run shown before it, and the errors it showed: each event the
    click triggers, then each chained after it (``.then`` always, ``.success`` on success, ``.failure`` on a
    ``gr.Error``), as Gradio's front end runs them."""
    from lowdim_sd.ui.page import build_page

    page = build_page(studio)
    [go] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == "personalize"]
    [event] = [fn for fn in page.fns.values() if fn.api_name == "personalize"]
    values = ui_events.page_values(page)  # the follow-ups read controls besides the event's (More pictures)
    values.update({block._id: asked[block.elem_id] for block in event.inputs})
    values.update({block._id: SHOWN[block.elem_id] for block in event.outputs})
    errors: list[str] = []
    ui_events.run_chain(page, [fn for fn in page.fns.values() if (go._id, "click") in fn.targets], values, errors)
    return {block.elem_id: values[block._id] for block in event.outputs}, errors


@pytest.mark.parametrize(("field", "value", "line"), [
    ("steps", 0, "Finetune steps must be 1 to 2000, got 0"),
    ("rank", 2.5, "Rank must be a whole number, got 2.5"),
    ("photo", None, "drop a face photo first"),
])
def test_a_bad_value_clicked_while_a_run_runs_leaves_the_run_shown(studio, another_run, field, value, line):
    shown, errors = clicked(studio, {**ASKED, field: value})
    assert errors == [line] and shown == {**SHOWN, "job-line": line}  # the line stays once the toast fades (EK 1)


def test_a_bad_value_with_nothing_running_leaves_the_run_shown_too(studio):
    shown, errors = clicked(studio, {**ASKED, "steps": 0})
    line = "Finetune steps must be 1 to 2000, got 0"
    assert errors == [line] and shown == {**SHOWN, "job-line": line}


def test_a_good_click_while_a_run_runs_is_refused_on_the_job_line_only(studio, another_run):
    """The line beside Personalize (review CR 2); the run shown stays whole, its stage table included: the stages box
    is emptied for a run's bar only when the studio was free as it started (CR 1)."""
    shown, errors = clicked(studio, ASKED)
    assert errors == [] and shown["job-line"].startswith("a personalization started in another tab is already running")
    assert {**shown, "job-line": ""} == SHOWN


def test_a_run_that_started_and_failed_clears_the_run_shown(studio, monkeypatch):
    def fails(*args: object) -> None:
        raise LowdimError("tinyfaces could not load: its weights are damaged")

    monkeypatch.setattr(studio, "_personalize_into", fails)
    shown, errors = clicked(studio, ASKED)
    assert errors == ["tinyfaces could not load: its weights are damaged"]
    assert shown["gallery"] == [] and shown["downloads"] is None and shown["stages"] == "" and shown[None] is None
    assert shown["earlier"] == NAME and shown["draw-prompt"] == SHOWN["draw-prompt"]
