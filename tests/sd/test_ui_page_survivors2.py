"""What the rest of review DN's mutation audit of the page's handlers found unpinned (the mutants its first pass
never ran): a relative Model path taken for a hub id, a Personalize's failure line and a refusal that is none, a
failed Open during a run, the line for a photo dropped in Draw's box, and the photo size limit's edge. Each test
fails on the mutant its docstring names; none needs a model or a server."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_sd.ui import checks, page_handlers, photos
from lowdim_sd.ui.studio import ANOTHER_TABS_JOB, Busy, Stopped

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

SENT = ("face.png", "tinyfaces", False, None, 4, 0, 10, None)  # Personalize's controls, as the page sends them


class FakeStudio:
    """The studio's face the handlers use: where runs are, and a job that ends as ``ends`` says."""

    def __init__(self, out: Path, ends: Exception | None = None) -> None:
        self.config = SimpleNamespace(out=out)
        self.ends = ends

    def personalize(self, *args: object, owner: str) -> None:
        raise self.ends or AssertionError("no job expected")


def _tab(name: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=name)  # what ``session`` reads of Gradio's request


# --- the Model box ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["../no-such-model", ".cache/no-such-model"])
def test_a_relative_path_that_is_not_there_is_refused_not_taken_for_a_hub_id(typed, tmp_path, monkeypatch):
    """hubid-dotted-path: "../x" has the shape of a hub id (owner/name), but is a folder that is not there."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LowdimError, match=f"^model '{typed}' is neither an installed model"):
        checks.check_model(typed)
    assert checks.check_model("someone/some-model") == "someone/some-model"


# --- a Personalize that failed or was refused -------------------------------------------------------------------

def test_a_failed_personalize_says_why_on_the_job_line(tmp_path):
    """failure-not-recorded: the follow-up would leave the job line empty once the toast fades."""
    handlers = page_handlers.PersonalizeHandlers(FakeStudio(tmp_path, ends=RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        handlers.personalize(*SENT, request=_tab("a"))
    *cleared, line = handlers.failed({"run": "earlier"}, request=_tab("a"))
    assert line == "the personalization failed: unexpected error: disk full (details in the terminal)"
    assert cleared[4] is None  # the run shown is forgotten: Draw no longer draws it


@pytest.mark.parametrize("refusal", [Busy(f"a run {ANOTHER_TABS_JOB} is running"), Stopped("stopped")],
                         ids=["busy", "stopped"])
def test_a_refused_or_stopped_personalize_is_no_failure(tmp_path, refusal):
    """busy-recorded-as-failure: a refusal would be kept as a failure and shown as "the personalization failed"."""
    handlers = page_handlers.PersonalizeHandlers(FakeStudio(tmp_path, ends=refusal))
    with pytest.raises(type(refusal)):
        handlers.personalize(*SENT, request=_tab("a"))
    assert handlers.failed({"run": "earlier"}, request=_tab("a"))[-1] == ""


# --- Open during a run ------------------------------------------------------------------------------------------

def test_a_failed_open_during_my_run_lets_my_run_show_when_done(tmp_path):
    """open-marks-before-check: an Open of a run that is not there would count as a run opened meanwhile, so the
    tab's own run, done, would only be listed, not shown."""
    handlers = page_handlers.PersonalizeHandlers(FakeStudio(tmp_path))
    with handlers.opens.watch("a") as opened:
        with pytest.raises(gr.Error):
            handlers.open_run("no-such-run", request=_tab("a"))
        assert not opened.is_set()


# --- Draw's adapter file box ------------------------------------------------------------------------------------

def test_a_file_that_is_no_adapter_dropped_in_draw_s_box_says_so(tmp_path):
    """upload-unchecked: a photo dropped in Draw's box was named by its whole upload path, as a file lowdim cannot
    read, not as "not an adapter" with the file to drop instead."""
    from lowdim_sd.ui.page_draw import draw_section

    with gr.Blocks() as page:  # Draw's row alone: its events, no server
        model = gr.Dropdown(["tinyfaces"], value="tinyfaces")
        draw_section(FakeStudio(tmp_path), gr.State(None), model)
    [use_adapter] = [event.fn for event in page.fns.values() if event.api_name == "use_adapter"]
    photo = tmp_path / "face.png"
    Image.new("RGB", (8, 8)).save(photo)
    with pytest.raises(gr.Error) as caught:
        use_adapter(str(photo), "tinyfaces", None)
    assert caught.value.message == ("face.png is not an adapter: drop the .safetensors file that lowdim personalize "
                                    "wrote (adapter.safetensors)")


# --- the photo --------------------------------------------------------------------------------------------------

def test_a_photo_of_exactly_the_most_pixels_is_taken(tmp_path, monkeypatch):
    """pixels-boundary: the limit is "at most MAX_PIXELS"; a photo of exactly that many was refused."""
    monkeypatch.setattr(photos, "MAX_PIXELS", 64 * 64)  # the edge, at a size cheap to write
    edge, over = tmp_path / "edge.png", tmp_path / "over.png"
    Image.new("RGB", (64, 64), "red").save(edge)
    Image.new("RGB", (64, 65), "red").save(over)
    assert photos.check_photo(edge) == edge
    with pytest.raises(LowdimError, match="^over.png"):
        photos.check_photo(over)
