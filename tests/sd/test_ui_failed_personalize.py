"""A Personalize that fails leaves no earlier run on the page as if it were the failed one's (review FAF1): its
gallery, downloads and stage table are cleared, as a failed Open clears them, while a click refused because a job
runs (Busy) is no failure and leaves everything as it was (docs/cli.md). On the page, a click whose values are
refused before a run starts leaves it as it was too (test_ui_refused_personalize.py); a client calling
/personalize gets the same line, and the failure follow-up is still wired to that event."""

from __future__ import annotations

from pathlib import Path

import pytest
import ui_events

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
gradio_client = pytest.importorskip("gradio_client")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")


def follow_ups(config: dict, api_name: str) -> list[dict]:
    """The events the page runs when the event ``api_name`` fails, as a client reads the page's config."""
    [event] = [dep for dep in config["dependencies"] if dep.get("api_name") == api_name]
    return [dep for dep in config["dependencies"]
            if dep.get("trigger_after") == event["id"] and dep.get("trigger_only_on_failure")]


def test_a_failed_personalize_clears_the_run_shown_and_a_busy_refusal_does_not(tmp_path):
    from gradio_client import handle_file
    from ui_requests import refusal, served_page  # tests/sd, on the path as pytest puts it

    def asked(steps: object) -> tuple:  # photo, model, hypernetwork, steps, rank, seed, gallery steps, face
        return handle_file(str(FACE)), "tinyfaces", True, steps, 4, 0, 1, 0

    with served_page(tmp_path / "ui") as (url, studio):
        client = gradio_client.Client(url, verbose=False)
        done = client.predict(*asked(1), api_name="/personalize")
        assert "done in" in done[2]  # a run shown: gallery, downloads, stage table
        line = refusal(client, *asked(0), api_name="/personalize")
        assert line == "Finetune steps must be 1 to 2000, got 0"
        [cleared] = follow_ups(client.config, "personalize")
        [personalize] = [dep for dep in client.config["dependencies"] if dep.get("api_name") == "personalize"]
        assert cleared["outputs"] == personalize["outputs"]  # each output of the failed event: no "Error" badge kept
        with ui_events.another_tab_running(studio):
            busy = client.predict(*asked(1), api_name="/personalize")  # no AppError: the page runs no follow-up
    assert busy[-1].startswith("a personalization started in another tab is already running")  # the job line
    assert all(value.get("__type__") == "update" and "value" not in value for value in busy[:-1])


def test_what_a_failed_personalize_leaves(tmp_path):
    """The follow-up's values: no gallery, downloads or stage table, and Draw no longer draws the run that was
    shown (a dropped adapter file it still draws); Earlier runs and Draw's prompt as they were."""
    from ui_requests import handler  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.page import build_page
    from lowdim_sd.ui.page_draw import NOTHING_TO_DRAW
    from lowdim_sd.ui.studio import Studio, StudioConfig

    page = build_page(Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui")))
    [event] = [fn for fn in page.fns.values() if fn.api_name == "personalize"]
    [then] = [fn for fn in page.fns.values() if fn.trigger_after == event._id and fn.trigger_only_on_failure]
    assert then.inputs == [event.outputs[4]] and then.outputs == event.outputs  # what Draw draws, in; all out
    ids = [block.elem_id for block in then.outputs]
    left = dict(zip(ids, then.fn({"run": "20260101-120000-face"}), strict=True))
    assert left["gallery"] == [] and left["downloads"] is None and left["stages"] == ""
    assert left[None] is None and left["drawing"] == NOTHING_TO_DRAW  # None: the state, which has no id
    assert left["earlier"] == left["draw-prompt"] == gr.update()
    kept = dict(zip(ids, then.fn({"run": "20260101-120000-face", "adapter": "/x/a.safetensors"}), strict=True))
    assert kept[None] == {"adapter": "/x/a.safetensors"}
    assert handler(page, "personalize") is event.fn
