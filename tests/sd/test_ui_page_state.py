"""What the page holds after a dropped adapter file is cleared (review BL3) and after a request fails (BL4), through
its handlers as Gradio calls them: Draw goes back to the run still shown, and no earlier result is left under a
failed request's error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ui_requests import handler, refused  # tests/sd, on the path as pytest puts it

from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd):
    """(studio, its page, one finished run on the tiny pipeline, which the tests only read)."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.page import build_page

    folder = tmp_path_factory.mktemp("state")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder,
                       "face")[0]
    studio = Studio(StudioConfig(model="tinyfaces", out=folder / "ui"))
    record = studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    return studio, build_page(studio), record


def event(page, api_name: str):
    [found] = [fn for fn in page.fns.values() if fn.api_name == api_name]
    return found


def on_failure(page, api_name: str):
    """What the page does when the event ``api_name`` fails: the event Gradio runs then, if any."""
    failed = event(page, api_name)
    [found] = [fn for fn in page.fns.values() if fn.trigger_after == failed._id and fn.trigger_only_on_failure]
    return found


def test_clearing_a_dropped_adapter_file_draws_the_run_still_shown_again(made):
    studio, page, record = made
    use_adapter = handler(page, "use_adapter")
    opened = handler(page, "open_run")(record.name)[4]  # what Draw draws: the run opened
    assert event(page, "open_run").outputs[4] in event(page, "use_adapter").inputs  # the page passes it on
    dropped, _, line = use_adapter(str(record.adapter), "tinyfaces", opened)
    assert line.startswith(f"Draw draws the adapter `{record.adapter.name}`")
    again, prompt, line = use_adapter(None, "tinyfaces", dropped)  # the file box's x
    assert again == opened and line == f"Draw draws run `{record.name}`" and prompt == gr.update()
    drawn, *_ = handler(page, "draw_more")(again, "tinyfaces", "a [V] face", 1.0, "1", 0, 1, 1)
    assert len(drawn) == 1  # the run, drawn on the model it was made with (not the Model box's TinyFaces)


def test_clearing_a_dropped_adapter_file_with_no_run_shown_leaves_nothing_to_draw(made):
    from lowdim_sd.ui.page_draw import NOTHING_TO_DRAW

    _, page, record = made
    use_adapter = handler(page, "use_adapter")
    dropped, _, _ = use_adapter(str(record.adapter), "tinyfaces", None)
    assert use_adapter(None, "tinyfaces", dropped) == (None, gr.update(), NOTHING_TO_DRAW)


def test_a_failed_score_clears_the_earlier_scores(made):
    _, page, _ = made
    line = refused(handler(page, "run"), [str(FACE)], str(FACE), "a [V] face", "sks", "CLIP-T")
    assert line.startswith("unknown metric 'CLIP-T'")
    then = on_failure(page, "run")
    assert [block.elem_id for block in then.outputs] == ["eval-table"]
    assert then.fn() == f"nothing was scored: {line}"  # its line in the table, which stays (review EA 4)


def test_a_failed_open_shows_no_run_and_draw_keeps_only_a_dropped_file(made):
    from lowdim_sd.ui.page_draw import NOTHING_TO_DRAW

    _, page, record = made
    assert refused(handler(page, "open_run"), "no-such-run").startswith("Earlier runs has no run 'no-such-run'")
    then = on_failure(page, "open_run")
    opened = event(page, "open_run")
    assert then.inputs == [opened.outputs[4]]  # what Draw draws
    ids = [block.elem_id for block in then.outputs]
    run_only = dict(zip(ids, then.fn({"run": record.name}), strict=True))
    assert run_only["gallery"] == [] and run_only["downloads"] is None and run_only["stages"] == ""
    assert run_only[None] is None and run_only["drawing"] == NOTHING_TO_DRAW  # None: the state, which has no id
    file = {"run": record.name, "adapter": str(record.adapter)}
    with_file = dict(zip(ids, then.fn(file), strict=True))
    assert with_file[None] == {"adapter": str(record.adapter)}
    assert with_file["drawing"].startswith(f"Draw draws the adapter `{record.adapter.name}`")
    assert with_file["earlier"] == with_file["draw-prompt"] == gr.update()  # the name typed, the prompt: as they are
