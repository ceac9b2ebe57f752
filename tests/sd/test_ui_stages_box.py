"""The stages box holds only the run shown's stage times or the running job's bar; a job's own line (a refusal, a
stop) goes in the line under Personalize and Stop (review CR 1, 2, 4, 5, 7c). Driven in-process as Gradio's front
end drives the page (``ui_events``): a click's events, then those chained after each."""

from __future__ import annotations

from pathlib import Path

import pytest
import ui_events

from lowdim_sd.ui.studio import Stopped, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = str(Path(__file__).resolve().parents[2] / "examples" / "face.png")
NAME = "20260101-120000-face"
TABLE = f"<p>Run {NAME} done</p>"  # the stage table of the run shown
STOPPED = "stopped: the personalization was stopped at its next step; nothing of it was kept"
ASKED = {"photo": FACE, "model": "tinyfaces", "use-hyper": True, "steps": 1, "rank": 4, "seed": 0,
         "preview-steps": 1, "face": 0}


@pytest.fixture
def studio(tmp_path) -> Studio:
    return Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))


class Page:
    """One tab of the page, its controls' values by elem_id, a run shown (its stage table in the stages box)."""

    def __init__(self, studio: Studio) -> None:
        from lowdim_sd.ui.page import build_page

        self.page = build_page(studio)
        self.values = ui_events.page_values(self.page)
        self.ids = {block.elem_id: block._id for block in self.page.blocks.values() if getattr(block, "elem_id", None)}
        self.values.update({self.ids[name]: value for name, value in ASKED.items()})
        self.values[self.ids["stages"]] = TABLE
        self.errors: list[str] = []

    def __getitem__(self, elem_id: str) -> object:
        return self.values[self.ids[elem_id]]

    def press(self, elem_id: str) -> None:
        ui_events.fire(self.page, elem_id, "click", self.values, self.errors)


def test_a_run_starting_leaves_the_run_shown_whole_and_clears_the_line(studio, monkeypatch):
    """Review CZ2: a Personalize emptied only the stage table of the run shown, its gallery and downloads left,
    and the gallery jumped up and back. The run shown stays whole until the new run replaces it (its bar is on its
    own place under the buttons, not over the stages box: CR1); the line holds no earlier stop under the bar."""
    tab = Page(studio)
    tab.values[tab.ids["job-line"]] = STOPPED
    tab.values[tab.ids["gallery"]] = [("/runs/00.png", "reference")]
    seen: list[tuple] = []

    def personalize(*args, **kwargs):
        seen.append((tab["stages"], tab["job-line"], tab["gallery"]))
        raise Stopped(STOPPED)

    monkeypatch.setattr(studio, "personalize", personalize)
    tab.press("personalize")
    assert seen == [(TABLE, "", [("/runs/00.png", "reference")])]


def test_a_refusal_goes_in_the_line_and_leaves_the_run_shown_without_a_stop_line_over_it(studio):
    """CR2: another tab's run refuses this one's Personalize: the line says so beside the buttons, the stages box
    holds no refusal, and the gallery stays."""
    tab = Page(studio)
    tab.values[tab.ids["gallery"]] = [("/runs/00.png", "reference")]
    with ui_events.another_tab_running(studio):
        tab.press("personalize")
    assert tab["job-line"].startswith("a personalization started in another tab is already running")
    assert "already running" not in (tab["stages"] or "")
    assert tab["gallery"] == [("/runs/00.png", "reference")] and tab.errors == []


def test_a_refused_personalize_leaves_the_opened_runs_stage_table(studio):
    """A Personalize refused as another tab's job runs changes only the job line: the run shown keeps its stage
    table beside its gallery and downloads, rather than the bar's emptied box over a run still shown."""
    tab = Page(studio)
    with ui_events.another_tab_running(studio):
        tab.press("personalize")
    assert tab["stages"] == TABLE
    assert tab["job-line"].startswith("a personalization started in another tab is already running")


def test_stop_says_its_line_beside_the_buttons_and_leaves_the_stage_table(studio):
    tab = Page(studio)
    tab.press("stop")
    assert tab["job-line"] == "nothing is running" and tab["stages"] == TABLE


def test_open_clears_the_line_and_refreshes_the_runs_list(studio):
    """CR5: a refusal's line ("another tab's run is running") does not outlive the user's next Open."""
    from lowdim_sd.ui.studio import RunSettings

    record = studio.personalize(FACE, RunSettings(model="tinyfaces", steps=1, preview_steps=1))
    tab = Page(studio)
    with ui_events.another_tab_running(studio):
        tab.press("personalize")
    assert tab["job-line"]
    tab.values[tab.ids["earlier"]] = record.name
    tab.press("open")
    assert tab["job-line"] == "" and record.name in tab["stages"] and tab.errors == []


def test_a_refused_personalize_refreshes_the_runs_list(studio):
    """CR5: another tab's run finished since this page loaded: the next Personalize lists it, refused or not."""
    from lowdim_sd.ui.studio import RunSettings

    tab = Page(studio)
    record = studio.personalize(FACE, RunSettings(model="tinyfaces", steps=1, preview_steps=1))
    [earlier] = [block for block in tab.page.blocks.values() if getattr(block, "elem_id", None) == "earlier"]
    choices: list = []
    [check] = [fn for fn in tab.page.fns.values() if (tab.ids["personalize"], "click") in fn.targets]
    [start] = [fn for fn in tab.page.fns.values() if fn.trigger_after == check._id and earlier in fn.outputs]
    for value in start.fn():
        if isinstance(value, dict) and "choices" in value:
            choices = value["choices"]
    assert record.name in [choice if isinstance(choice, str) else choice[0] for choice in choices]


def test_open_reads_the_text_the_box_shows_not_its_last_committed_value(studio):
    """CR4: a Dropdown that takes typed names does not send an emptied text; Open reads the box's text itself, so
    an emptied box asks for a run instead of opening the last name again."""
    tab = Page(studio)
    [event] = [fn for fn in tab.page.fns.values() if fn.api_name == "open_run"]
    assert event.js and "#earlier input" in event.js


def test_an_emptied_earlier_runs_box_asks_for_a_run(studio):
    tab = Page(studio)
    tab.values[tab.ids["earlier"]] = ""
    tab.press("open")
    assert tab.errors == ["pick an earlier run first"]


@pytest.mark.parametrize("sent", [99999999999999999999, 1e20, 2.0 ** 60])
def test_a_seed_past_what_a_browser_reads_exactly_is_refused_without_a_rounded_echo(sent):
    """CR7c: the page's number field sends 99999999999999999999 as the float 1e20: the line must not quote
    100000000000000000000 as if typed. A client's exact int is quoted as sent."""
    from lowdim.errors import LowdimError
    from lowdim_sd.ui.page_parts import whole

    if isinstance(sent, int):
        assert whole(sent, "Run seed") == sent  # exact: the studio's range check quotes it as sent
        return
    with pytest.raises(LowdimError) as refused:
        whole(sent, "Run seed")
    line = str(refused.value)
    assert line.startswith("Run seed ") and str(int(sent)) not in line and "rounds" in line
