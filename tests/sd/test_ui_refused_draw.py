"""A Draw click the page refuses for a bad value (a number out of range or not whole, a prompt without [V], a way to
draw it cannot read, nothing to draw) before any job starts is its one line, which stays on Draw's own line once its
toast fades (review EA 3), and leaves the rest of the page as it is, as a Personalize click's does
(test_ui_refused_personalize.py, task FBL): no red "Error" badge over Draw's line, and the value's own line even while
another tab's run holds the job slot, not that tab's Busy line. A draw that started and then failed has its badge on
Draw's line, where its bar was, not in the stages box, "the draw failed: ..." on Draw's own line after it, and the
pictures it would have replaced are captioned as the earlier draw's, not left as if they were its own. A client
calling /draw_more directly is refused by the job itself, in the same line. Driven as Gradio's front end drives the
page, in-process: the events a click triggers, then those chained after each one."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator

import pytest
import ui_events  # tests/sd, on the path as pytest puts it
from ui_requests import handler, refused

from lowdim.errors import LowdimError
from lowdim_sd.ui.studio import Studio

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

# What the page shows before the click, by elem_id: pictures drawn earlier, Draw's own line (empty), and the run's
# stage times, which no Draw writes (review CR 2).
SHOWN = {"drawn": [("/runs/drawn-0.png", "a [V] face (seed 0, scale 1)")], "draw-said": "",
         "stages": "<p>Run face done</p>"}
BUSY = "a personalization started in another tab is already running"
# A value each control may hold, by the name Draw's handler gives it, and the one line that refuses it.
BAD = [
    ("pictures", 0, "Pictures must be 1 to 16, got 0"),
    ("sample_steps", 101, "Draw's denoising steps must be 1 to 100, got 101"),
    ("first_seed", 2.5, "Picture seed must be a whole number, got 2.5"),
    ("adapter_scale", float("nan"), "Adapter scale must be a number, got nan"),
    ("how_to_draw", "start=2", "'start=2': How to draw's start must be a fraction of the steps in [0, 1), got 2.0"),
    ("prompt_text", "a photo of a face",
     "the prompt has no [V]: write [V] where the subject goes, e.g. 'a photo of a [V] face'"),
    ("what", None, "personalize or open a run, or drop an adapter file, first: Draw needs an adapter"),
    ("what", {"adapter": "/uploads/notes.txt"},
     "notes.txt is not an adapter: drop the .safetensors file that lowdim personalize wrote (adapter.safetensors)"),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd) -> tuple[Studio, dict]:
    """(studio, what a Draw click asks for: its run, which the tests only read, and good values)."""
    studio, record = ui_events.studio_with_one_run(tmp_path_factory.mktemp("refused-draw"), tiny_sd)
    asked = {"what": {"run": record.name}, "chosen_model": "tinyfaces", "prompt_text": "a photo of a [V] face",
             "adapter_scale": 1.0, "how_to_draw": "1", "first_seed": 0, "sample_steps": 1, "pictures": 1}
    return studio, asked


def clicked(studio: Studio, asked: dict, before: dict = SHOWN) -> tuple[dict, list[str], list[str]]:
    """The page's Draw outputs after a click on Draw, what ``before`` shows before it; the errors the click showed,
    and the elem_ids of the outputs Gradio's front end badged "Error" for them."""
    from lowdim_sd.ui.page import build_page

    page = build_page(studio)
    [draw] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == "draw"]
    [job] = [fn for fn in page.fns.values() if fn.api_name == "draw_more"]
    names = list(inspect.signature(job.fn).parameters)  # each input by the name Draw's handler gives it
    values = ui_events.page_values(page)  # the follow-ups read states besides the job's own controls
    values.update({block._id: asked[name] for block, name in zip(job.inputs, names, strict=False)})
    shows = [block for block in page.blocks.values() if getattr(block, "elem_id", None) in before]
    values.update({block._id: before[block.elem_id] for block in shows})
    errors: list[str] = []
    with badges_kept(page) as badged:
        ui_events.run_chain(page, [fn for fn in page.fns.values() if (draw._id, "click") in fn.targets],
                                         values, errors)
    return {block.elem_id: values[block._id] for block in shows}, errors, badged


@contextlib.contextmanager
def badges_kept(page) -> Iterator[list[str]]:
    """The elem_ids Gradio's front end puts a failed event's red "Error" badge on, in the order they failed: where
    its bar goes, its ``show_progress_on``, or each of its outputs where it names none (an event with no outputs
    badges nothing; test_ui_progress_place.py reads the same places from the page's config)."""
    badged: list[str] = []

    def kept(fn: Callable, places: list) -> Callable:
        @functools.wraps(fn)  # the same signature: the driver passes `request` where the handler takes one
        def badging(*args: object, **kwargs: object) -> object:
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                badged.extend(place.elem_id for place in places)
                raise
        return badging

    originals = {index: fn.fn for index, fn in page.fns.items()}
    for fn in page.fns.values():
        fn.fn = kept(fn.fn, list(fn.show_progress_on or fn.outputs))
    try:
        yield badged
    finally:
        for index, original in originals.items():
            page.fns[index].fn = original


@pytest.mark.parametrize(("field", "value", "line"), BAD)
def test_a_bad_draw_value_while_another_tabs_run_runs_is_its_line_and_leaves_the_page(made, field, value, line):
    studio, asked = made
    with ui_events.another_tab_running(studio):
        shown, errors, badged = clicked(studio, {**asked, field: value})
    assert errors == [line]
    assert shown == {**SHOWN, "draw-said": line} and badged == []  # its line stays beside Draw (review EA 3)


@pytest.mark.parametrize(("field", "value", "line"), BAD)
def test_a_bad_draw_value_with_nothing_running_leaves_the_page_too(made, field, value, line):
    studio, asked = made
    shown, errors, badged = clicked(studio, {**asked, field: value})
    assert errors == [line]
    assert shown == {**SHOWN, "draw-said": line} and badged == []


def test_a_run_gone_since_it_was_opened_is_its_line_too(made):
    studio, asked = made
    with ui_events.another_tab_running(studio):
        shown, errors, badged = clicked(studio, {**asked, "what": {"run": "gone"}})
    assert errors == [f"no finished run 'gone' in {studio.config.out}"]
    assert shown == {**SHOWN, "draw-said": errors[0]} and badged == []


def test_a_good_draw_while_another_tabs_run_runs_is_refused_beside_draw_only(made):
    studio, asked = made
    with ui_events.another_tab_running(studio):
        shown, errors, badged = clicked(studio, asked)
    assert errors == [] and badged == [] and shown["draw-said"].startswith(BUSY)
    assert shown["stages"] == SHOWN["stages"]
    assert shown["drawn"] == SHOWN["drawn"]


# The pictures More pictures shows before a Draw that fails, and after it: each kept, captioned as the earlier draw's,
# so none is taken for the failed draw's. The page marks them once however many draws fail (test_ui_more_pictures.py),
# by its own record, not by their text: a prompt of the user's own may start with the mark's words (task FCQ).
EARLIER = [
    (SHOWN["drawn"], [("/runs/drawn-0.png", "earlier draw: a [V] face (seed 0, scale 1)")]),
    ([("/runs/drawn-0.png", "earlier draw: a [V] face (seed 0, scale 1)")],
     [("/runs/drawn-0.png", "earlier draw: earlier draw: a [V] face (seed 0, scale 1)")]),
    (None, []),  # Gradio's value of an empty gallery: nothing drawn yet, nothing to mark
]


@pytest.mark.parametrize(("before", "after"), EARLIER)
def test_a_draw_that_started_and_failed_marks_the_pictures_shown_as_the_earlier_draws(made, monkeypatch, before,
                                                                                        after):
    """Its badge on Draw's line, where its bar was, not in the stages box (whose run's stage times stay), and the
    pictures it would have replaced no longer shown as if they were its own (review: FBU)."""
    studio, asked = made

    def fails(*args: object) -> None:
        raise LowdimError("the model could not load: its weights are damaged")

    monkeypatch.setattr(studio._drawer, "draw", fails)  # private: the one place a started draw fails on purpose
    shown, errors, badged = clicked(studio, asked, {**SHOWN, "drawn": before})
    assert errors == ["the model could not load: its weights are damaged"] and badged == ["drawing"]
    assert shown == {**SHOWN, "drawn": after,
                     "draw-said": "the draw failed: the model could not load: its weights are damaged"}


def test_a_draw_after_a_failed_one_shows_only_its_own_pictures(made):
    studio, asked = made
    shown, errors, badged = clicked(studio, asked, {**SHOWN, "drawn": EARLIER[0][1]})
    assert errors == [] and badged == []
    assert [caption for _, caption in shown["drawn"]] == ["a photo of a [V] face (seed 0, scale 1)"]


@pytest.mark.parametrize(("field", "value", "line"), BAD)
def test_a_client_calling_draw_more_directly_is_refused_by_the_job_itself(made, field, value, line):
    """A client's /draw_more runs the job's event alone, without the check the page's click runs first."""
    from lowdim_sd.ui.page import build_page

    studio, asked = made
    values = {**asked, field: value}
    with ui_events.another_tab_running(studio):  # its own line, not Busy
        assert refused(handler(build_page(studio), "draw_more"), *values.values()) == line
