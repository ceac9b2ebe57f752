"""The Personalize tab's handlers are functions of the studio and the controls' values: callable without a page."""

from __future__ import annotations

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.ui.studio import Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")


def test_the_crop_handlers_need_no_page_and_no_studio():
    from lowdim_sd.ui.page import show_crop, show_model, show_photo

    for shown in (show_photo(None, "tinyfaces"), show_crop(None, "tinyfaces", 0), show_model("", "tinyfaces", 0)):
        image, note, face = shown
        assert image is None and note == "" and face["visible"] is False


def test_the_run_handlers_act_on_their_studio_without_a_page(tmp_path, tiny_sd):
    from lowdim_sd.ui.page import PersonalizeHandlers

    handlers = PersonalizeHandlers(Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui")))
    with pytest.raises(gr.Error, match="Earlier runs has no run 'nope'"):
        handlers.open_run("nope")
    with pytest.raises(LowdimError, match="drop a face photo first"):  # the page shows it; here it is raised
        handlers.personalize(None, str(tiny_sd), True, None, 4, 0, 30, 0, None)
    assert isinstance(handlers.stop_mine(), str)  # nothing of this session's to stop: a line, no error
