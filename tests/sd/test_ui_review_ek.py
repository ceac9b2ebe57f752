"""Review EK: what the Personalize tab and Draw's file box refuse stays said on a line once the toast fades, and a
tab closed or reloaded while its job runs says so, on the server's console and on the reloaded page.

1. A Personalize click refused for a value (before any job) puts its line on the job line, in place of an earlier
   stop there; a failed Open leaves its reason there too; the next Open that shows a run takes it away.
2. A closed or reloaded tab's job, stopped, is one line on the server's console naming the run, and the reloaded
   tab (which the browser tells the page it was: ``page.SESSION_BEFORE``) shows it on its job line.
3. A file Draw's adapter box refuses puts its reason on Draw's own line, which the next drop or Draw empties.

Driven as Gradio's front end drives the page, in-process (``ui_events``): a click's events, then those chained
after each."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import ui_events  # tests/sd, on the path as pytest puts it

from lowdim_sd import stopping
from lowdim_sd.ui.page_parts import html_text
from lowdim_sd.ui.studio import RunSettings, Stopped, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = str(Path(__file__).resolve().parents[2] / "examples" / "face.png")
STOPPED = "stopped: the personalization was stopped at its next step; nothing of it was kept"
ASKED = {"photo": FACE, "model": "tinyfaces", "use-hyper": True, "steps": 1, "rank": 4, "seed": 0,
         "preview-steps": 1, "face": 0}
RELOADED = re.compile(r"stopped: the personalization \(run \d{8}-\d{6}-face\) was stopped at its next step, as this "
                      r"tab was reloaded \(or closed\) while it ran; nothing of it was kept")
CONSOLE = re.compile(r"lowdim ui: stopped the personalization \(run \d{8}-\d{6}-face\) at its next step, as the tab "
                     r"that started it was closed or reloaded; nothing of it was kept")


@pytest.fixture
def studio(tmp_path) -> Studio:
    return Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))


class Page:
    """One tab of the page: its controls' values by elem_id (the run settings of ``ASKED``), and the errors its
    events showed (their toasts)."""

    def __init__(self, studio: Studio) -> None:
        from lowdim_sd.ui.page import build_page

        self.page = build_page(studio)
        self.values = ui_events.page_values(self.page)
        self.ids = {block.elem_id: block._id for block in self.page.blocks.values() if getattr(block, "elem_id", None)}
        self.set(ASKED)
        self.errors: list[str] = []

    def __getitem__(self, elem_id: str) -> object:
        return self.values[self.ids[elem_id]]

    def set(self, values: dict) -> None:
        self.values.update({self.ids[name]: value for name, value in values.items()})

    def fire(self, elem_id: str, trigger: str = "click") -> None:
        ui_events.fire(self.page, elem_id, trigger, self.values, self.errors)

    def fn(self, name: str):
        [found] = [fn for fn in self.page.fns.values() if getattr(fn.fn, "__name__", "") == name]
        return found


# --- 1. the Personalize tab's refusals -----------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "line"), [
    ("steps", 2.5, "Finetune steps must be a whole number, got 2.5"),
    ("steps", 0, "Finetune steps must be 1 to 2000, got 0"),
    ("steps", -3, "Finetune steps must be 1 to 2000, got -3"),
    ("steps", 99999999, "Finetune steps must be 1 to 2000, got 99999999"),
    ("seed", -1, "Run seed must be 0 to"),
    ("photo", None, "drop a face photo first"),
])
def test_a_value_refused_before_the_job_stays_on_the_job_line_in_place_of_an_earlier_stop(studio, field, value, line):
    tab = Page(studio)
    tab.set({"job-line": STOPPED, field: value})  # a run stopped before: its line under the buttons
    tab.fire("personalize")
    [error] = tab.errors  # the toast, which fades
    assert error.startswith(line)
    assert tab["job-line"] == html_text(error)  # the line that stays: this click's, not the earlier stop's


def test_the_next_click_that_runs_takes_the_refusal_away_and_its_run_shows(studio, monkeypatch):
    record = studio.personalize(FACE, RunSettings(model="tinyfaces", steps=1, preview_steps=1))
    tab = Page(studio)
    tab.set({"steps": 0})
    tab.fire("personalize")
    assert tab["job-line"] == "Finetune steps must be 1 to 2000, got 0"
    seen = []

    def personalize(*args: object, **kwargs: object):
        seen.append(tab["job-line"])  # the line while the job runs, above its bar
        return record

    monkeypatch.setattr(studio, "personalize", personalize)
    tab.set({"steps": 1})
    tab.fire("personalize")
    assert seen == [""] and tab["job-line"] == "" and record.name in str(tab["stages"])


def test_a_tabs_refusal_is_never_written_on_another_tab(studio):
    tab = Page(studio)
    check, refused = tab.fn("check_request"), tab.fn("refused")
    mine, theirs = SimpleNamespace(session_hash="tab-1"), SimpleNamespace(session_hash="tab-2")
    with pytest.raises(gr.Error):
        check.fn(None, "tinyfaces", True, 1, 4, 0, 1, 0, request=mine)
    assert refused.fn(request=theirs) == gr.update()  # nothing of tab-1's: tab-2's line as it is
    assert refused.fn(request=mine) == "drop a face photo first"


@pytest.mark.parametrize(("typed", "line"), [
    ("no-such-run", "Earlier runs has no run 'no-such-run': pick one it lists"),
    ("", "pick an earlier run first"),
])
def test_a_failed_open_says_why_on_the_job_line_until_an_open_shows_a_run(studio, typed, line):
    record = studio.personalize(FACE, RunSettings(model="tinyfaces", steps=1, preview_steps=1))
    tab = Page(studio)
    tab.set({"earlier": record.name})
    tab.fire("open")
    assert tab.errors == [] and record.name in str(tab["stages"])
    tab.set({"earlier": typed, "job-line": STOPPED})
    tab.fire("open")
    [error] = tab.errors
    assert error.startswith(line)
    assert tab["job-line"] == html_text(f"nothing was opened: {error}")  # not an emptied page with no reason
    assert tab["stages"] == "" and tab["gallery"] == []  # the run shown cleared, as before
    tab.set({"earlier": record.name})
    tab.fire("open")
    assert tab["job-line"] == "" and record.name in str(tab["stages"])


# --- 2. a closed or reloaded tab's job -----------------------------------------------------------------------

def closing_tab_1(tab: Page):
    """A listener that, on the job's first report, does what Gradio's unload does for the tab ``tab-1``."""
    closed = tab.fn("closed").fn

    def hear(label: str, done: int, total: int) -> None:
        closed(SimpleNamespace(session_hash="tab-1"))
    return hear


def test_a_closed_tabs_run_is_stopped_and_one_console_line_names_it(studio, capfd):
    tab = Page(studio)
    with pytest.raises(Stopped):
        studio.personalize(FACE, RunSettings(model="tinyfaces", steps=1, preview_steps=1),
                           listener=closing_tab_1(tab), owner="tab-1")
    said = [line for line in capfd.readouterr().err.splitlines() if line.startswith("lowdim ui:")]
    assert len(said) == 1 and CONSOLE.fullmatch(said[0]), said
    assert [path.name for path in studio.config.out.iterdir()] == []  # nothing of it kept


def test_the_reloaded_tab_shows_its_stopped_run_on_the_job_line_once(studio):
    tab = Page(studio)
    with pytest.raises(Stopped):
        studio.personalize(FACE, RunSettings(model="tinyfaces", steps=1, preview_steps=1),
                           listener=closing_tab_1(tab), owner="tab-1")
    reloaded = tab.fn("reloaded")
    assert reloaded.fn("tab-2", request=SimpleNamespace(session_hash="tab-3"))[0] == gr.skip()  # not tab-2's run
    line, now, before = reloaded.fn("tab-1", request=SimpleNamespace(session_hash="tab-4"))
    assert RELOADED.fullmatch(line) and (now, before) == ("tab-4", "tab-1")
    assert reloaded.fn("tab-1", request=SimpleNamespace(session_hash="tab-5"))[0] == gr.skip()  # said once


def test_the_page_keeps_its_session_in_the_browser_for_the_reload_and_the_timer_reads_it(studio):
    from lowdim_sd.ui.page import KEEP_SESSION, SESSION_BEFORE

    tab = Page(studio)
    load, tick = tab.fn("reloaded"), tab.fn("refresh")
    assert load.js == SESSION_BEFORE and "sessionStorage.getItem" in SESSION_BEFORE
    [keep] = [fn for fn in tab.page.fns.values() if fn.trigger_after == load._id]
    assert keep.js == KEEP_SESSION and "sessionStorage.setItem" in KEEP_SESSION and keep.inputs == [load.outputs[1]]
    assert load.inputs == [load.outputs[1]] and load.outputs[0] is tick.outputs[1]  # the job line
    assert load.outputs[2] in tick.inputs  # the session before the reload


def test_a_run_still_stopping_as_the_page_loads_is_told_at_the_next_tick(studio):
    """Gradio's unload of the old page may come after the new page's load, and a job stops only at its next step:
    the timer tells it once it has stopped."""
    tab = Page(studio)
    entered, ended = threading.Event(), {}

    def tab_1_job() -> None:
        try:
            with studio.job("personalization", owner="tab-1") as running:
                running.run = "20260101-120000-face"
                entered.set()
                while True:
                    stopping.check()
                    time.sleep(0.01)
        except Stopped:
            ended["how"] = "stopped"

    job = threading.Thread(target=tab_1_job)
    job.start()
    assert entered.wait(10)
    line, _, before = tab.fn("reloaded").fn("tab-1", request=SimpleNamespace(session_hash="tab-2"))
    assert line == gr.skip() and before == "tab-1"  # still running: nothing to tell yet
    tab.fn("closed").fn(SimpleNamespace(session_hash="tab-1"))
    job.join(10)
    assert ended == {"how": "stopped"}
    _, told, _ = tab.fn("refresh").fn(None, "", before)
    assert told == ("stopped: the personalization (run 20260101-120000-face) was stopped at its next step, as this "
                    "tab was reloaded (or closed) while it ran; nothing of it was kept")


def test_a_stop_pressed_in_the_tab_keeps_nothing_for_a_reload(studio):
    """Only a closed tab's job: a Stop's line is on the tab that pressed it."""
    tab = Page(studio)

    def stop_pressed(label: str, done: int, total: int) -> None:
        studio.stop(owner="tab-1", wait=0)

    with pytest.raises(Stopped, match="^stopped: the personalization was stopped at its next step; nothing"):
        studio.personalize(FACE, RunSettings(model="tinyfaces", steps=1, preview_steps=1), listener=stop_pressed,
                           owner="tab-1")
    assert tab.fn("reloaded").fn("tab-1", request=SimpleNamespace(session_hash="tab-2"))[0] == gr.skip()


# --- 3. Draw's adapter file box ------------------------------------------------------------------------------

def test_a_refused_adapter_file_says_why_on_draws_line_until_the_next_drop_or_draw(studio, tmp_path):
    notes = tmp_path / "notes.safetensors"
    notes.write_text("a photo of me\n")
    tab = Page(studio)
    tab.set({"adapter-file": str(notes)})
    tab.fire("adapter-file", "change")
    [error] = tab.errors
    assert "notes.safetensors" in error
    assert tab["draw-said"] == html_text(error) and tab["adapter-file"] is None  # the box emptied, as before
    tab.set({"adapter-file": None})  # the box's x: a drop that Draw's line gives way to
    tab.fire("adapter-file", "change")
    assert tab["draw-said"] == ""
    tab.set({"adapter-file": str(notes)})
    tab.fire("adapter-file", "change")
    assert tab["draw-said"] == html_text(error)
    tab.fire("draw")  # nothing to draw: the Draw's own line now
    assert tab["draw-said"] == "personalize or open a run, or drop an adapter file, first: Draw needs an adapter"
