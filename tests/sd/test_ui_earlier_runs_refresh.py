"""The page's timer (review CZ5): another tab's finished run joins *Earlier runs* without a click, the value and
the text typed there left as they are, and another tab's refusal line is replaced once that tab's run has ended;
a tick that finds nothing changed updates nothing."""

from __future__ import annotations

import json

import pytest

from lowdim_sd.ui.studio import Busy, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

RECORD = {"settings": {"model": "tinyfaces"}, "stages": {"finetune": 5.0},
          "gallery": [{"file": "gallery/00.png", "caption": "a [V] face"}],
          "downloads": {"lowdim adapter": "adapter.safetensors"}}
NOTHING = {"__type__": "update"}  # gr.skip(): the page leaves the output as it is


def finished_run(out, name: str) -> None:
    (out / name / "gallery").mkdir(parents=True)
    (out / name / "gallery" / "00.png").write_bytes(b"")
    (out / name / "adapter.safetensors").write_bytes(b"")
    (out / name / "run.json").write_text(json.dumps(RECORD))


@pytest.fixture
def handlers(tmp_path):
    from lowdim_sd.ui.page import PersonalizeHandlers  # where the tests have always found it

    return PersonalizeHandlers(Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui")))


def test_a_run_another_tab_finished_is_listed_and_nothing_changed_updates_nothing(handlers):
    out = handlers.studio.config.out
    finished_run(out, "20261206-100000-face")
    runs, line, listed = handlers.refresh(None, "")  # the first tick lists what the folder holds
    assert runs["choices"] == ["20261206-100000-face"] and "value" not in runs  # what the user typed stays
    assert line == NOTHING
    assert handlers.refresh(listed, "") == (NOTHING, NOTHING, NOTHING)  # the next: a listing, no page update
    (out / ".20261206-110000-face.partial").mkdir()  # a run in the making: not yet a run
    assert handlers.refresh(listed, "") == (NOTHING, NOTHING, NOTHING)
    finished_run(out, "20261206-110000-face")  # the other tab's run, published
    runs, line, listed = handlers.refresh(listed, "")
    assert runs["choices"] == ["20261206-110000-face", "20261206-100000-face"] and "value" not in runs
    assert line == NOTHING and handlers.refresh(listed, "") == (NOTHING, NOTHING, NOTHING)


def test_another_tabs_refusal_is_replaced_once_its_run_ended_and_this_tabs_own_lines_stay(handlers):
    from lowdim_sd.ui.page_handlers import OTHER_TAB_ENDED, run_folder_names
    from lowdim_sd.ui.page_parts import OWN_JOB_RUNNING, html_text

    listed = run_folder_names(handlers.studio.config.out)
    with handlers.studio.job("personalization", owner="tab A"):
        with pytest.raises(Busy) as refused, handlers.studio.job("personalization", owner="tab B"):
            pass
        stale = html_text(str(refused.value))  # as job_on_page puts it on tab B's job line
        stop_line = html_text(handlers.studio.stop(owner="tab B"))  # B's Stop: "... started in another tab ..."
        assert handlers.refresh(listed, stale) == (NOTHING, NOTHING, NOTHING)  # still running: still true
    for line in (stale, stop_line):
        assert handlers.refresh(listed, line) == (NOTHING, OTHER_TAB_ENDED, NOTHING)
    own = [OWN_JOB_RUNNING, "stopped: the personalization was stopped at its next step; nothing of it was kept",
           "the personalization failed: no face found", "", OTHER_TAB_ENDED]
    for line in own:  # this tab's own job's lines, and the replaced line itself, stay
        assert handlers.refresh(listed, line) == (NOTHING, NOTHING, NOTHING)
