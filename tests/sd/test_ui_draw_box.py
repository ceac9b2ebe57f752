"""Draw's own boxes and lines (review CR 2, 3 and 7): a Draw refused (another tab's run holds the job slot) or
stopped says so beside Draw, not over the stages box, where an opened run's stage table stays beside its gallery
and downloads; More pictures only shows Draw's pictures, with no upload target; a photo the page cannot read is
said in the page's words, not PIL's; the How-to-draw help speaks to a person before it gives the CLI's short form.
Driven as Gradio's front end drives the page, in-process (ui_events): a click's events, then those chained after
each."""

from __future__ import annotations

from pathlib import Path

import pytest
import ui_events  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.ui.studio import Studio

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

BUSY = "a personalization started in another tab is already running"
STOPPED = "stopped: the drawing was stopped at its next step; nothing of it was kept"


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd) -> tuple[Studio, str]:
    """(studio, the name of one finished run on the tiny pipeline, which the tests only read)."""
    studio, record = ui_events.studio_with_one_run(tmp_path_factory.mktemp("draw-box"), tiny_sd)
    return studio, record.name


def test_a_draw_refused_while_another_tabs_run_runs_says_so_beside_draw_and_keeps_the_runs_stage_table(made):
    tab = ui_events.Tab(*made)
    table = tab.get("stages")
    with ui_events.another_tab_running(made[0]):
        tab.click("draw")
    assert tab.errors == [] and tab.get("stages") == table
    assert str(tab.get("draw-said")).startswith(BUSY)


def test_a_stopped_draw_says_so_beside_draw_and_keeps_the_runs_stage_table(made, monkeypatch):
    studio, run = made
    tab = ui_events.Tab(studio, run)
    table = tab.get("stages")

    def stopped_at_its_next_step(*args: object) -> None:
        raise KeyboardInterrupt  # what the stop flag raises in a denoising step (lowdim_sd/stopping.py)

    monkeypatch.setattr(studio._drawer, "draw", stopped_at_its_next_step)  # private: the one place a draw stops
    tab.click("draw")
    assert tab.errors == [] and tab.get("stages") == table and tab.get("draw-said") == STOPPED


@pytest.mark.parametrize("then", ["drawn", "failed"])
def test_the_next_draw_that_runs_takes_the_refusals_line_away(made, monkeypatch, then):
    """Left there, the line would say another tab's run is running beside pictures just drawn, or in place of
    the next draw's own failure, whose line it is now (review EA 3)."""
    studio, run = made
    tab = ui_events.Tab(studio, run)
    with ui_events.another_tab_running(studio):
        tab.click("draw")
    assert str(tab.get("draw-said")).startswith(BUSY)
    if then == "failed":
        def fails(*args: object) -> None:
            raise LowdimError("the model could not load: its weights are damaged")

        monkeypatch.setattr(studio._drawer, "draw", fails)
    tab.click("draw")
    failed = "the model could not load: its weights are damaged"
    assert tab.get("draw-said") == ("" if then == "drawn" else f"the draw failed: {failed}")
    assert tab.errors == ([] if then == "drawn" else [failed])


def test_more_pictures_takes_no_upload_and_its_follow_ups_still_read_its_pictures(made, tmp_path):
    """Dropped there, a file was a "drawn" picture under any run opened after, and a non-image a bare "An error
    occurred."; the follow-ups that keep or mark Draw's pictures take it as an input, which Gradio's front end
    sends whatever its interactivity."""
    from PIL import Image

    from lowdim_sd.ui.page import build_page

    page = build_page(made[0])
    config = page.get_config_file()
    [props] = [c["props"] for c in config["components"] if c["props"].get("elem_id") == "drawn"]
    assert props.get("interactive") is False
    [gallery] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == "drawn"]
    picture = tmp_path / "drawn-0.png"
    Image.new("RGB", (8, 8)).save(picture)
    sent = gallery.postprocess([(str(picture), "a [V] face (seed 0, scale 1)")])
    [(file, caption)] = gallery.preprocess(sent)
    assert Path(file).read_bytes() == picture.read_bytes() and caption == "a [V] face (seed 0, scale 1)"


@pytest.mark.parametrize(("name", "content", "said"), [
    ("notes.txt", b"not a picture at all",
     "notes.txt is not an image this page can read (not a picture file, or a damaged one); use a JPEG, PNG or WebP "
     "photo"),
    ("fake.jpg", b"\xff\xd8\xff\xe0garbage",  # a JPEG's start, then nothing of it: no other format to ask for
     "fake.jpg is cut short (a partly downloaded or copied photo); drop the whole photo again"),
])
def test_a_photo_the_page_cannot_read_is_said_in_its_words_with_the_files_name(tmp_path, name, content, said):
    from lowdim_sd.ui.photos import check_photo

    photo = tmp_path / name
    photo.write_bytes(content)
    with pytest.raises(LowdimError) as caught:
        check_photo(photo)
    assert str(caught.value) == said


def test_how_to_draw_says_in_plain_words_what_it_sets_before_the_clis_short_form(made):
    from lowdim_sd.ui.page import build_page

    config = build_page(made[0]).get_config_file()
    [help_text] = [c["props"]["info"] for c in config["components"]
                   if c["props"].get("label") == "How to draw"]
    words, _, short_form = help_text.partition("the same as")
    assert short_form and "=" not in words  # no te=T before the plain words have said what it is
    for said in ("text encoder", "UNet", "cross-attention", "steps"):
        assert said in words
    assert "te=" in short_form and "lowdim" in short_form
