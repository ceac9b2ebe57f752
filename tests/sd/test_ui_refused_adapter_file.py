"""Draw's adapter file box after a file its check refuses (task FCV): the box is what Draw draws while it holds a
file, so a refused file dropped into it (over a good one or not) leaves it empty, and Draw draws the run shown, as
a box cleared with its x would; Draw's line says so, the error is its toast, and More pictures follow what Draw
draws. Driven as Gradio's front end drives the page, in-process (ui_events)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ui_more_pictures import Tab, drawn_subjects, made  # noqa: F401  (made: the runs and file, a fixture)

from lowdim_sd.ui.page_draw import NOTHING_TO_DRAW

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")


@pytest.fixture(params=["not an adapter", "damaged"])
def refused(request, tmp_path) -> Path:
    """A file Draw's check refuses: a text file, and a .safetensors file cut short."""
    if request.param == "not an adapter":
        notes = tmp_path / "notes.txt"
        notes.write_text("a photo of me\n")
        return notes
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x80\x00\x00\x00\x00\x00\x00\x00{\"weight\": ")
    return damaged


def test_a_refused_file_over_a_good_one_empties_the_box_and_draw_draws_the_run(made, tiny_sd, monkeypatch,  # noqa: F811
                                                                              refused):
    studio, (first, _), dropped = made
    subjects = drawn_subjects(studio, monkeypatch)
    tab = Tab(studio)
    tab.open(first.name)
    tab.drop(dropped, tiny_sd)
    tab.click("draw")
    assert tab.errors == [] and len(tab.more_pictures()) == 1
    tab.drop(refused, tiny_sd)
    [error] = tab.errors
    assert refused.name in error  # the toast names the file, as before
    assert tab.get("adapter-file") is None  # the box says no file is drawn, the earlier one dropped too
    assert tab.get("drawing") == f"Draw draws run `{first.name}`"
    assert tab.more_pictures() == []  # drawn from the earlier file, which Draw no longer draws
    tab.click("draw")
    assert tab.errors == [error] and subjects == [dropped, first.adapter]


def test_a_refused_file_beside_a_run_leaves_the_run_and_its_pictures(made, tiny_sd, refused):  # noqa: F811
    studio, (first, _), _ = made
    tab = Tab(studio)
    tab.open(first.name)
    tab.click("draw")
    before = tab.more_pictures()
    assert tab.errors == [] and len(before) == 1
    tab.drop(refused, tiny_sd)
    assert len(tab.errors) == 1 and tab.get("adapter-file") is None
    assert tab.get("drawing") == f"Draw draws run `{first.name}`"
    assert tab.more_pictures() == before  # Draw still draws the run they are of


def test_a_refused_file_over_a_good_one_with_no_run_shown_leaves_nothing_to_draw(made, tiny_sd, refused):  # noqa: F811
    studio, _, dropped = made
    tab = Tab(studio)
    tab.drop(dropped, tiny_sd)
    tab.click("draw")
    assert tab.errors == [] and len(tab.more_pictures()) == 1
    tab.drop(refused, tiny_sd)
    assert len(tab.errors) == 1 and tab.get("adapter-file") is None
    assert tab.get("drawing") == NOTHING_TO_DRAW and tab.more_pictures() == []
    tab.click("draw")
    assert tab.errors[1].startswith("personalize or open a run, or drop an adapter file, first")
