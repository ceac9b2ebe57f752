"""Why Draw or Score made nothing stays on the page once the toast fades (review EA 3, 4), as a failed Personalize's
line stays on the job line (test_ui_failed_personalize.py): a Draw refused before its job (a prompt with no [V], a
How to draw it cannot read, nothing to draw) keeps its line on Draw's own line, and one that started and failed
keeps "the draw failed: ..." there, until the next Draw that runs; Score's refusal or failure stays where its table
goes. Each tab is told only its own: another tab's failure is never written on mine. Driven as Gradio's front end
drives the page, in-process (ui_events): a click's events, then those chained after each."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import ui_events  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.ui.studio import Studio

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
NO_V = "the prompt has no [V]: write [V] where the subject goes, e.g. 'a photo of a [V] face'"
DAMAGED = "the model could not load: its weights are damaged"
# A Draw value refused before any job starts, by its control's elem_id (None: what Draw draws), and its line.
REFUSED = [
    ("draw-prompt", "a photo of a face in a hat", NO_V),
    ("how", "start=2", "'start=2': How to draw's start must be a fraction of the steps in [0, 1), got 2.0"),
    (None, None, "personalize or open a run, or drop an adapter file, first: Draw needs an adapter"),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd) -> tuple[Studio, str]:
    """(studio, the name of one finished run on the tiny pipeline, which the tests only read)."""
    studio, record = ui_events.studio_with_one_run(tmp_path_factory.mktemp("lines-stay"), tiny_sd)
    return studio, record.name


def failing_draw(studio: Studio, monkeypatch) -> None:
    """A draw that starts and then fails (private: the one place a started draw fails on purpose)."""
    def fails(*args: object) -> None:
        raise LowdimError(DAMAGED)

    monkeypatch.setattr(studio._drawer, "draw", fails)


@pytest.mark.parametrize(("elem_id", "value", "line"), REFUSED)
def test_a_refused_draw_keeps_its_line_beside_draw(made, elem_id, value, line):
    tab = ui_events.Tab(*made)
    tab.set({elem_id: value})
    tab.click("draw")
    assert tab.errors == [line]  # the toast, which fades
    assert tab.get("draw-said") == line  # and the line that stays


def test_a_draw_that_started_and_failed_says_so_beside_draw_and_keeps_the_earlier_pictures(made, monkeypatch):
    studio, run = made
    tab = ui_events.Tab(studio, run)
    tab.click("draw")
    drawn = tab.get("drawn")
    assert tab.errors == [] and len(drawn) == 1  # type: ignore[arg-type]  # a gallery's value: a list
    failing_draw(studio, monkeypatch)
    tab.click("draw")
    assert tab.errors == [DAMAGED]
    assert tab.get("draw-said") == f"the draw failed: {DAMAGED}"
    assert [caption for _, caption in tab.get("drawn")] == [f"earlier draw: {drawn[0][1]}"]  # type: ignore


def test_the_next_draw_takes_the_line_away_as_it_starts(made, monkeypatch):
    """While it draws (minutes on a CPU), a refusal's line beside it would say why a draw it is making made
    nothing; once it has drawn, beside its pictures."""
    studio, run = made
    tab = ui_events.Tab(studio, run)
    tab.set({"draw-prompt": "a photo of a face"})
    tab.click("draw")
    assert tab.get("draw-said") == NO_V
    drawing, seen = studio._drawer.draw, []

    def draws(*args: object) -> object:
        seen.append(tab.get("draw-said"))  # the line as the page shows it while the job runs
        return drawing(*args)

    monkeypatch.setattr(studio._drawer, "draw", draws)
    tab.set({"draw-prompt": "a photo of a [V] face"})
    tab.click("draw")
    assert tab.errors == [NO_V] and seen == [""] and tab.get("draw-said") == ""


def test_a_draw_refused_while_another_tabs_run_runs_keeps_its_busy_line(made):
    studio, run = made
    tab = ui_events.Tab(studio, run)
    with ui_events.another_tab_running(studio):
        tab.click("draw")
    assert tab.errors == []  # no failure: its line, as before, with no "Error" badge
    assert str(tab.get("draw-said")).startswith("a personalization started in another tab is already running")


def on_failure(page, fn) -> object:
    """The event the page runs when ``fn`` fails."""
    [found] = [then for then in page.fns.values() if then.trigger_after == fn._id and then.trigger_only_on_failure]
    return found


def test_a_tabs_refused_draw_is_never_written_on_another_tab(made):
    """Two tabs of one page (one server): each failure's follow-up writes its own tab's line, never the other's."""
    from lowdim_sd.ui.page import build_page

    studio, run = made
    page = build_page(studio)
    [draw] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == "draw"]
    [check] = [fn for fn in page.fns.values() if (draw._id, "click") in fn.targets]
    then = on_failure(page, check)
    mine, theirs = SimpleNamespace(session_hash="tab-1"), SimpleNamespace(session_hash="tab-2")
    with pytest.raises(gr.Error):
        check.fn({"run": run}, "tinyfaces", "a photo of a face", 1.0, "1", 0, 1, 1, request=mine)
    assert then.fn(request=theirs) == gr.update()  # nothing of tab-1's: tab-2's line as it is
    assert then.fn(request=mine) == NO_V


def evaluate(tab: ui_events.Tab, pictures: list[str] | None, reference: str | None, metrics: str) -> None:
    tab.set({"generated": pictures, "reference": reference, "metrics": metrics})
    tab.click("score")


def test_score_with_no_reference_photo_says_so_where_the_table_goes(made):
    tab = ui_events.Tab(*made)
    evaluate(tab, [str(FACE)], str(FACE), "tinyfaces-image")
    assert tab.errors == [] and "1.000" in str(tab.get("eval-table"))  # a picture against itself
    evaluate(tab, [str(FACE)], None, "tinyfaces-image")
    assert tab.errors == ["drop the reference photo of the subject"]
    assert tab.get("eval-table") == "nothing was scored: drop the reference photo of the subject"  # no scores left


def test_a_score_that_fails_says_why_in_markdown_that_shows_it_as_typed(made):
    tab = ui_events.Tab(*made)
    evaluate(tab, [str(FACE)], str(FACE), "my_*own*_metric")
    [line] = tab.errors
    assert line.startswith("unknown metric 'my_*own*_metric'")
    table = str(tab.get("eval-table"))
    assert table.startswith("nothing was scored: unknown metric 'my\\_\\*own\\*\\_metric'")  # not "own" in italics


def test_a_tabs_failed_score_is_never_written_on_another_tab(made):
    from lowdim_sd.ui.page import build_page

    page = build_page(made[0])
    [score] = [fn for fn in page.fns.values() if fn.api_name == "run"]
    then = on_failure(page, score)
    mine, theirs = SimpleNamespace(session_hash="tab-1"), SimpleNamespace(session_hash="tab-2")
    with pytest.raises(gr.Error):
        score.fn([str(FACE)], None, "a photo of a [V] face", "sks", "tinyfaces-image", request=mine)
    assert then.fn(request=theirs) == ""  # nothing of tab-1's (and no earlier scores: test_ui_page_state.py)
    assert then.fn(request=mine) == "nothing was scored: drop the reference photo of the subject"


def test_a_run_shown_takes_away_the_line_of_a_draw_refused_for_want_of_one(made):
    """"open a run first", left beside Draw once a run is open, would contradict the run shown above it."""
    tab = ui_events.Tab(*made)
    tab.set({None: None})  # nothing to draw, as a fresh page
    tab.click("draw")
    assert str(tab.get("draw-said")).startswith("personalize or open a run")
    tab.click("open")
    assert tab.errors == [REFUSED[2][2]] and tab.get("draw-said") == ""
