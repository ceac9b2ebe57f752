"""An earlier run opened while this tab's own Personalize runs (review CR 1, left open by f4bbd21): the opened run
stays on screen whole, its gallery beside its own stage table. The running job's bar goes on the job line under
Personalize and Stop, never over the opened run's stage table, and once the job is done its line names its run,
done, instead of putting that run over the one the user opened. Driven in-process as Gradio's front end drives the
page (``ui_events``): a click's events, then those chained after each."""

from __future__ import annotations

from pathlib import Path

import pytest
import ui_events  # tests/sd, on the path as pytest puts it

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = str(Path(__file__).resolve().parents[2] / "examples" / "face.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_sd) -> tuple:
    """(studio, run B: the earlier run to open, run A: what the running Personalize finishes), both finished."""
    import torch
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.studio import RunSettings

    folder = tmp_path_factory.mktemp("open-while-running")
    studio, earlier = ui_events.studio_with_one_run(folder, tiny_sd)
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1, folder,
                       "other")[0]
    finished = studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    assert finished.name != earlier.name
    return studio, earlier, finished


class Tab:
    """One page, its controls' values by elem_id, and the errors its clicks showed."""

    def __init__(self, studio) -> None:
        from lowdim_sd.ui.page import build_page

        self.page = build_page(studio)
        self.values = ui_events.page_values(self.page)
        self.ids = {block.elem_id: block._id for block in self.page.blocks.values() if getattr(block, "elem_id", None)}
        asked = {"photo": FACE, "model": "tinyfaces", "steps": 1, "rank": 4, "seed": 0, "preview-steps": 1}
        self.values.update({self.ids[name]: value for name, value in asked.items()})
        self.errors: list[str] = []

    def __getitem__(self, elem_id: str) -> object:
        return self.values[self.ids[elem_id]]

    def press(self, elem_id: str) -> None:
        ui_events.fire(self.page, elem_id, "click", self.values, self.errors)

    def open(self, name: str) -> None:
        self.values[self.ids["earlier"]] = name
        self.press("open")

    def bar_places(self, api_name: str) -> list[str]:
        """The elem_ids of the controls Gradio's page draws the event ``api_name``'s bar over."""
        [event] = [fn for fn in self.page.fns.values() if fn.api_name == api_name]
        return [block.elem_id for block in (event.show_progress_on or event.outputs)]


def running(monkeypatch, studio, finished, while_it_runs) -> list[tuple]:
    """The studio's Personalize as a job that reports its progress, calls ``while_it_runs`` between two steps, and
    finishes as ``finished``; returns the progress it reported after ``while_it_runs``, as (done, total)."""
    after: list[tuple] = []

    def personalize(photo, settings, listener=None, owner=""):
        listener("fast finetune", 0, 2)
        listener("training", 1, 2)
        while_it_runs()
        listener("training", 2, 2)  # the following progress: the bar still moves
        after.append((2, 2))
        return finished

    monkeypatch.setattr(studio, "personalize", personalize)
    return after


def test_an_earlier_run_opened_while_a_run_runs_stays_whole_beside_its_stage_table(runs, monkeypatch):
    from lowdim_sd.ui.page import stage_table

    studio, earlier, finished = runs
    tab = Tab(studio)
    seen: dict[str, object] = {}

    def open_earlier() -> None:
        tab.open(earlier.name)
        seen.update(stages=tab["stages"], gallery=tab["gallery"])

    after = running(monkeypatch, studio, finished, open_earlier)
    tab.press("personalize")
    assert tab.errors == [] and after == [(2, 2)]
    assert seen["stages"] == stage_table(earlier)  # Open showed it
    # The bar that kept moving after the Open is drawn where it leaves the opened run's stage table alone, and where
    # the page still shows it: the job line, under Personalize and Stop.
    assert "stages" not in tab.bar_places("personalize")
    assert tab.bar_places("personalize") == ["job-bar"]
    # Done, the job leaves the opened run on screen, and says which run it made.
    assert tab["stages"] == stage_table(earlier) and tab["gallery"] == seen["gallery"]
    assert earlier.name in str(tab["drawing"])  # Draw draws the run on screen
    line = str(tab["job-line"])
    assert finished.name in line and "done" in line and finished.name not in str(tab["stages"])


def test_a_run_opened_before_personalize_gives_way_to_the_finished_run(runs, monkeypatch):
    """An Open before the job started is no Open meanwhile: the finished run is shown, gallery and stage table."""
    from lowdim_sd.ui.page import stage_table

    studio, earlier, finished = runs
    tab = Tab(studio)
    tab.open(earlier.name)
    running(monkeypatch, studio, finished, lambda: None)
    tab.press("personalize")
    assert tab.errors == [] and tab["stages"] == stage_table(finished) and tab["job-line"] == ""
    assert [caption for _, caption in tab["gallery"]] == [caption for _, caption in finished.gallery]


def failing(monkeypatch, studio, while_it_runs, error: Exception) -> None:
    """The studio's Personalize as a job holding the job slot, calling ``while_it_runs`` between two steps, and
    failing with ``error`` (a folder that cannot be written, as review CZ1 made one)."""

    def personalize(photo, settings, listener=None, owner=""):
        with studio.job("personalization", owner):
            listener("fast finetune", 0, 2)
            while_it_runs()
            raise error

    monkeypatch.setattr(studio, "personalize", personalize)


WRITE_FAILED = "/out/.20261206-164701-face.partial/adapter.safetensors: could not write (File exists)"


def test_a_run_that_fails_after_an_open_leaves_the_opened_run_whole_and_says_why(runs, monkeypatch):
    """Review CZ1: the failure's follow-up cleared the run the user opened meanwhile, and its only trace was a toast
    that fades. The opened run stays whole, and the job line says the run failed, and why."""
    from lowdim.errors import LowdimError
    from lowdim_sd.ui.page import stage_table

    studio, earlier, _ = runs
    tab = Tab(studio)
    seen: dict[str, object] = {}

    def open_earlier() -> None:
        tab.open(earlier.name)
        seen.update(gallery=tab["gallery"], downloads=tab["downloads"], drawing=tab["drawing"])

    failing(monkeypatch, studio, open_earlier, LowdimError(WRITE_FAILED))
    tab.press("personalize")
    assert tab.errors == [WRITE_FAILED]  # the toast
    assert tab["stages"] == stage_table(earlier) and tab["gallery"] == seen["gallery"] != []
    assert tab["downloads"] == seen["downloads"] and tab["drawing"] == seen["drawing"]
    assert earlier.name in str(tab["drawing"]) and tab["earlier"] == earlier.name
    line = str(tab["job-line"])
    assert "failed" in line and WRITE_FAILED in line
    assert "job-line" not in tab.bar_places("personalize")  # a line the bar does not cover


def test_a_failed_run_with_nothing_opened_clears_the_page_and_says_why_on_the_job_line(runs, monkeypatch):
    """A failure with no Open meanwhile still leaves no earlier run under its error (review FAF1), and its line
    stays on the page once the toast fades."""
    from lowdim.errors import LowdimError

    studio, earlier, _ = runs
    tab = Tab(studio)
    tab.open(earlier.name)
    failing(monkeypatch, studio, lambda: None, LowdimError(WRITE_FAILED))
    tab.press("personalize")
    assert tab.errors == [WRITE_FAILED] and tab["gallery"] == [] and tab["stages"] == ""
    line = str(tab["job-line"])
    assert "failed" in line and WRITE_FAILED in line


def test_a_second_click_in_the_same_tab_is_refused_readably_and_leaves_the_running_bar(runs, monkeypatch):
    """Review CZ4: a second Personalize while this tab's own run runs. Its refusal is a toast and a line the bar
    does not cover, and it runs no event of the job's, whose bar (and its clock) the page would restart."""
    studio, _, finished = runs
    tab = Tab(studio)
    calls: list[int] = []
    seen: dict[str, object] = {}

    def personalize(photo, settings, listener=None, owner=""):
        calls.append(1)
        with studio.job("personalization", owner):
            listener("fast finetune", 0, 2)
            tab.press("personalize")
            seen.update(line=tab["job-line"], errors=list(tab.errors))
            listener("training", 2, 2)
            return finished

    monkeypatch.setattr(studio, "personalize", personalize)
    tab.press("personalize")
    assert calls == [1]  # the refused click never reached the job's event, which has the bar
    [refusal] = seen["errors"]
    assert "already running" in refusal and "press Stop" in refusal  # the toast
    assert "already running" in str(seen["line"])  # and the line, readable beside the bar
    assert "job-line" not in tab.bar_places("personalize")
    assert tab["job-line"] == "" and finished.name in tab["stages"]  # the run then ends as it would have
