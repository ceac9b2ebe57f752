"""Whose pictures "More pictures" shows (task FBY): Draw's pictures name their prompt, not their run, so showing
another run (Personalize done, Open, a Personalize or Open that failed and cleared the run) clears them, where a
user would take them for the new run's. Opening the same run again keeps them, and so does a failure that leaves
the dropped adapter file they were drawn from, which Draw still draws. A click refused (a bad value, another tab's
run) or a stopped Personalize shows no other run and leaves them. A Draw that is stopped keeps the pictures it
would have replaced, captioned as the earlier draw's, as a failed Draw does. Driven as Gradio's front end drives
the page, in-process (ui_events): a click's events, then those chained after each."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import ui_events  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.ui.studio import RunSettings, Stopped, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
STOPPED = "stopped: the drawing was stopped at its next step; nothing of it was kept"


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd) -> tuple[Studio, list, Path]:
    """(studio, two finished runs on the tiny pipeline, a copy of the first's adapter as a file one drops): the
    tests only read them."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    folder = tmp_path_factory.mktemp("more-pictures")
    studio = Studio(StudioConfig(model="tinyfaces", out=folder / "ui"))
    records = []
    for seed in (4, 5):
        photo = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        face = save_images(photo, folder / f"photo{seed}", "face")[0]
        records.append(studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False,
                                                            preview_steps=1)))
    dropped = folder / "mine.safetensors"
    shutil.copyfile(records[0].adapter, dropped)
    return studio, records, dropped


class Tab:
    """One page, as a browser tab holds it: its values, and the errors its clicks showed."""

    def __init__(self, studio: Studio) -> None:
        from lowdim_sd.ui.page import build_page

        self.page = build_page(studio)
        self.values = ui_events.page_values(self.page)
        self.errors: list[str] = []
        self.set("draw-steps", 1)
        self.set("draw-count", 1)

    def _id(self, elem_id: str) -> int:
        [found] = [block._id for block in self.page.blocks.values() if getattr(block, "elem_id", None) == elem_id]
        return found

    def set(self, elem_id: str, value: object) -> None:
        self.values[self._id(elem_id)] = value

    def get(self, elem_id: str) -> object:
        return self.values[self._id(elem_id)]

    def click(self, elem_id: str) -> None:
        ui_events.fire(self.page, elem_id, "click", self.values, self.errors)

    def open(self, name: str) -> None:
        self.set("earlier", name)
        self.click("open")

    def drop(self, adapter: Path, model: Path) -> None:
        """``adapter`` in Draw's file box, drawn on ``model`` (the Model box)."""
        self.set("model", str(model))
        self.set("adapter-file", str(adapter))
        ui_events.fire(self.page, "adapter-file", "change", self.values, self.errors)

    def clear_file(self) -> None:
        """Draw's file box emptied with its x."""
        self.set("adapter-file", None)
        ui_events.fire(self.page, "adapter-file", "change", self.values, self.errors)

    def personalize(self) -> None:
        """Personalize clicked with a photo and values the page's own check passes."""
        self.set("model", "tinyfaces")
        self.set("photo", str(FACE))
        self.click("personalize")

    def more_pictures(self) -> list[str]:
        """The captions of More pictures."""
        return [caption for _, caption in self.get("drawn") or []]


@pytest.fixture
def drawn_from_the_first(made) -> tuple[Tab, list[str]]:
    """A tab that opened the first run and drew a picture of it; the captions More pictures showed then."""
    studio, (first, _), _ = made
    tab = Tab(studio)
    tab.open(first.name)
    tab.click("draw")
    assert tab.errors == [] and len(tab.more_pictures()) == 1
    return tab, tab.more_pictures()


def fails(message: str):
    def failing(*args: object, **kwargs: object) -> None:
        raise LowdimError(message)
    return failing


def test_opening_another_run_clears_the_pictures_drawn_of_the_one_shown(made, drawn_from_the_first):
    _, (_, second), _ = made
    tab, _ = drawn_from_the_first
    tab.open(second.name)
    assert tab.errors == [] and tab.get("drawing") == f"Draw draws run `{second.name}`"
    assert tab.more_pictures() == []


def test_opening_the_same_run_again_keeps_its_pictures(made, drawn_from_the_first):
    _, (first, _), _ = made
    tab, before = drawn_from_the_first
    tab.open(first.name)
    assert tab.errors == [] and tab.more_pictures() == before


def test_a_personalize_that_finishes_clears_the_pictures_of_the_run_it_replaces(made, drawn_from_the_first,
                                                                               monkeypatch):
    studio, (_, second), _ = made
    tab, _ = drawn_from_the_first
    monkeypatch.setattr(studio, "personalize", lambda *args, **kwargs: second)  # a run made: the second one
    tab.personalize()
    assert tab.errors == [] and tab.get("drawing") == f"Draw draws run `{second.name}`"
    assert tab.more_pictures() == []


@pytest.mark.parametrize("failed", ["personalize", "open"])
def test_a_personalize_or_open_that_fails_clears_the_pictures_with_the_run(made, drawn_from_the_first, monkeypatch,
                                                                          failed):
    studio, _, _ = made
    tab, _ = drawn_from_the_first
    if failed == "personalize":
        monkeypatch.setattr(studio, "personalize", fails("no face found in face.png"))  # a run that started
        tab.personalize()
    else:
        tab.open("no-such-run")
    assert len(tab.errors) == 1 and tab.get("gallery") == []  # the run shown cleared
    assert tab.more_pictures() == []


@pytest.mark.parametrize("refused", ["bad value", "busy", "stopped"])
def test_a_personalize_refused_or_stopped_leaves_the_pictures(made, drawn_from_the_first, monkeypatch, refused):
    """It shows no other run (the gallery and stage times stay), so the pictures stay with the run they are of."""
    studio, _, _ = made
    tab, before = drawn_from_the_first
    if refused == "bad value":
        tab.set("steps", 0)
        tab.personalize()
    elif refused == "busy":
        with ui_events.another_tab_running(studio):
            tab.personalize()
    else:
        def stopped(*args: object, **kwargs: object) -> None:
            raise Stopped("stopped: the personalization was stopped at its next step; nothing of it was kept")

        monkeypatch.setattr(studio, "personalize", stopped)
        tab.personalize()
    assert tab.get("gallery") != [] and tab.more_pictures() == before


@pytest.mark.parametrize("failed", ["personalize", "open"])
def test_the_pictures_of_a_dropped_file_stay_while_draw_still_draws_it(made, tiny_sd, monkeypatch, failed):
    """A failure clears the run shown but not the file dropped beside it, which Draw then draws: its pictures
    are what Draw makes now, and no run is shown to take them for. A run shown after that is what Draw draws
    (the run's own prompt in its box), so they go then."""
    studio, (first, second), dropped = made
    tab = Tab(studio)
    tab.open(first.name)
    tab.drop(dropped, tiny_sd)
    tab.click("draw")
    before = tab.more_pictures()
    assert tab.errors == [] and len(before) == 1
    if failed == "personalize":
        monkeypatch.setattr(studio, "personalize", fails("no face found in face.png"))
        tab.personalize()
    else:
        tab.open("no-such-run")
    assert tab.get("drawing").startswith(f"Draw draws the adapter `{dropped.name}`")
    assert tab.more_pictures() == before
    tab.open(second.name)
    assert tab.more_pictures() == []


def test_the_pictures_of_the_run_go_with_it_though_a_file_was_dropped_since(made, tiny_sd, drawn_from_the_first):
    """Drawn of the run before the file was dropped: the file still there after a failed Open is not what drew
    them."""
    _, _, dropped = made
    tab, _ = drawn_from_the_first
    tab.drop(dropped, tiny_sd)
    tab.open("no-such-run")
    assert tab.get("drawing").startswith(f"Draw draws the adapter `{dropped.name}`")
    assert tab.more_pictures() == []


def test_a_stopped_draw_marks_the_pictures_it_would_have_replaced_as_the_earlier_draws(made, drawn_from_the_first,
                                                                                      monkeypatch):
    """The stop's line is on Draw's own line, above More pictures, and a toast that fades; the mark says that
    these pictures are not the stopped draw's."""
    studio, _, _ = made
    tab, before = drawn_from_the_first

    def stopped_at_its_next_step(*args: object) -> None:
        raise KeyboardInterrupt  # what the stop flag raises in a denoising step (lowdim_sd/stopping.py)

    monkeypatch.setattr(studio._drawer, "draw", stopped_at_its_next_step)  # private: the one place a draw is stopped
    tab.set("draw-prompt", "a photo of a [V] face in the snow")
    tab.click("draw")
    assert tab.errors == [] and tab.get("draw-said") == STOPPED  # a stop is no error: no badge, its line by Draw
    assert tab.more_pictures() == ["earlier draw: " + caption for caption in before]
    tab.click("draw")  # stopped again: marked once
    assert tab.more_pictures() == ["earlier draw: " + caption for caption in before]


def test_a_stopped_draw_leaves_more_pictures_empty_where_none_were_drawn(made, monkeypatch):
    studio, (first, _), _ = made
    tab = Tab(studio)
    tab.open(first.name)

    def stopped_at_its_next_step(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(studio._drawer, "draw", stopped_at_its_next_step)
    tab.click("draw")
    assert tab.errors == [] and tab.get("draw-said") == STOPPED and tab.more_pictures() == []


def test_a_draw_that_ends_after_another_run_was_opened_leaves_no_pictures_under_it(made, drawn_from_the_first,
                                                                                  monkeypatch):
    """Open is no job, so it runs while a Draw does: the pictures that Draw then brings are of the run it replaced,
    as those drawn before the Open were."""
    studio, (_, second), _ = made
    tab, _ = drawn_from_the_first
    draw = studio._drawer.draw

    def opened_meanwhile(*args: object) -> object:
        tab.open(second.name)
        return draw(*args)

    monkeypatch.setattr(studio._drawer, "draw", opened_meanwhile)  # private: the one place a draw is under way
    tab.click("draw")
    assert tab.errors == [] and tab.get("drawing") == f"Draw draws run `{second.name}`"
    assert tab.more_pictures() == []


# Task FCQ: what Draw draws is the file box while it holds a file; a run shown clears the box; More pictures follow
# the source Draw draws, a dropped or cleared file included; the earlier draw's mark is the page's, not the prompt's.


def drawn_subjects(studio: Studio, monkeypatch) -> list[Path]:
    """The adapter file of each draw the studio runs from now on, as it draws it."""
    subjects: list[Path] = []
    draw = studio._drawer.draw

    def recorded(subject, settings):
        subjects.append(Path(subject.adapter))
        return draw(subject, settings)

    monkeypatch.setattr(studio._drawer, "draw", recorded)  # private: the one place a draw is under way
    return subjects


@pytest.mark.parametrize("shows", ["personalize", "open"])
def test_a_run_shown_after_a_file_was_dropped_clears_the_file_box_and_draw_draws_the_run(made, tiny_sd, monkeypatch,
                                                                                        shows):
    studio, (first, second), dropped = made
    subjects = drawn_subjects(studio, monkeypatch)
    tab = Tab(studio)
    tab.open(first.name)
    tab.drop(dropped, tiny_sd)
    if shows == "personalize":
        monkeypatch.setattr(studio, "personalize", lambda *args, **kwargs: second)
        tab.personalize()
    else:
        tab.open(second.name)
    assert tab.errors == [] and tab.get("adapter-file") is None  # the box no longer says another file is drawn
    assert tab.get("drawing") == f"Draw draws run `{second.name}`"
    tab.click("draw")
    assert tab.errors == [] and subjects == [second.adapter]


def test_a_file_dropped_beside_a_run_is_what_draw_draws_and_its_x_brings_the_run_back(made, tiny_sd, monkeypatch):
    studio, (first, _), dropped = made
    subjects = drawn_subjects(studio, monkeypatch)
    tab = Tab(studio)
    tab.open(first.name)
    tab.drop(dropped, tiny_sd)
    tab.click("draw")
    tab.clear_file()
    tab.click("draw")
    assert tab.errors == [] and tab.get("drawing") == f"Draw draws run `{first.name}`"
    assert subjects == [dropped, first.adapter]


def test_dropping_a_file_clears_the_pictures_drawn_of_the_run(made, tiny_sd, drawn_from_the_first):
    _, _, dropped = made
    tab, _ = drawn_from_the_first
    tab.drop(dropped, tiny_sd)
    assert tab.errors == [] and tab.get("drawing").startswith(f"Draw draws the adapter `{dropped.name}`")
    assert tab.more_pictures() == []


def test_clearing_the_file_clears_the_pictures_drawn_of_it(made, tiny_sd):
    studio, (first, _), dropped = made
    tab = Tab(studio)
    tab.open(first.name)
    tab.drop(dropped, tiny_sd)
    tab.click("draw")
    assert tab.errors == [] and len(tab.more_pictures()) == 1
    tab.clear_file()
    assert tab.get("drawing") == f"Draw draws run `{first.name}`" and tab.more_pictures() == []


def test_pictures_whose_prompt_starts_like_the_mark_are_still_marked_when_a_later_draw_fails(made, monkeypatch):
    studio, (first, _), _ = made
    tab = Tab(studio)
    tab.open(first.name)
    tab.set("draw-prompt", "earlier draw: a photo of a [V] face")  # the user's own words
    tab.click("draw")
    [caption] = tab.more_pictures()
    assert tab.errors == [] and caption.startswith("earlier draw: a photo of a [V] face")
    monkeypatch.setattr(studio._drawer, "draw", fails("the model could not load: its weights are damaged"))
    tab.click("draw")
    assert tab.more_pictures() == ["earlier draw: " + caption]
    tab.click("draw")  # failed again: marked once
    assert tab.more_pictures() == ["earlier draw: " + caption]
