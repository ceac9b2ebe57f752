"""Where ``lowdim ui`` says a job was refused (another tab's runs) or stopped: on the job's own line (Personalize's
under its buttons, Draw's under Draw), never over the run shown's stage times, and not only in a toast that fades.
The button's other outputs (the gallery, Downloads, Earlier runs, Draw's prompt) are left as they were, not covered
by Gradio's red "Error" badge that a raised ``gr.Error`` puts on each of them."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ui_requests import handler  # tests/sd, on the path as pytest puts it

from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
THEIRS = "a personalization started in another tab is already running"
TAB = SimpleNamespace(session_hash="tab-2")


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd):
    """(studio, its page, one finished run on the tiny pipeline, which the tests only read)."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.page import build_page

    folder = tmp_path_factory.mktemp("refusals")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder,
                       "face")[0]
    studio = Studio(StudioConfig(model="tinyfaces", out=folder / "ui"))
    record = studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    return studio, build_page(studio), record


@contextlib.contextmanager
def another_tabs_job(studio: Studio) -> Iterator[None]:
    """A personalization of tab-1 holding the studio's one job slot, in a thread of its own as Gradio runs it."""
    started, finish = threading.Event(), threading.Event()

    def hold() -> None:
        with studio.job("personalization", "tab-1"):
            started.set()
            finish.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        finish.set()
        thread.join(30)


def output_ids(page, api_name: str) -> list[str]:
    [event] = [fn for fn in page.fns.values() if fn.api_name == api_name]
    return [block.elem_id for block in event.outputs]


def status_and_the_rest(page, api_name: str, returned, box: str = "stages") -> tuple[str, list]:
    """The value of the box (``box``: the stages box, or Draw's own line) among what an event returned, and the
    other outputs' values."""
    values = list(returned) if isinstance(returned, (tuple, list)) else [returned]
    ids = output_ids(page, api_name)
    assert len(values) == len(ids)
    status = ids.index(box)
    return values[status], values[:status] + values[status + 1:]


def test_a_refused_personalize_says_why_beside_its_button_and_leaves_the_rest(made, tiny_sd):
    """On the job line under Personalize and Stop, not in the stages box over the run shown's stage table (CR 2)."""
    studio, page, _ = made
    with another_tabs_job(studio):
        returned = handler(page, "personalize")(str(FACE), str(tiny_sd), True, 1, 4, 0, 1, 0, request=TAB)
    line, rest = status_and_the_rest(page, "personalize", returned, "job-line")
    assert line.startswith(THEIRS) and line.endswith("wait for it to finish") and "\n" not in line
    assert rest and all(value == gr.update() for value in rest)  # Earlier runs, gallery, Draw's prompt: as they were


def test_a_refused_draw_says_why_beside_draw_and_leaves_its_pictures(made):
    """Beside Draw, not in the stages box, where an opened run's stage table stays (review CR 2)."""
    from lowdim_sd.ui.page_parts import REFUSED

    studio, page, record = made
    with another_tabs_job(studio):
        returned = handler(page, "draw_more")({"run": record.name}, "tinyfaces", "a [V] face", 1.0, "1", 0, 1, 1,
                                              request=TAB)
    line, rest = status_and_the_rest(page, "draw_more", returned, "draw-said")
    assert line.startswith(THEIRS) and rest == [gr.update(), REFUSED]  # More pictures as they were; how it ended


def test_a_refused_evaluate_says_why_in_its_table(made):
    studio, page, _ = made
    with another_tabs_job(studio):
        line = handler(page, "run")([str(FACE)], str(FACE), "a [V] face", "sks", "", request=TAB)
    assert line.startswith(THEIRS)


def test_a_stopped_personalize_says_so_beside_its_button_and_leaves_the_rest(made, tiny_sd, monkeypatch):
    from lowdim_sd import faces

    studio, page, _ = made
    # The tiny model crops, and TinyFaces' 32 px face is none to dlib: the run would end at the face check made
    # before the model loads, never reaching a step to stop at. A face found there lets it run into the load.
    monkeypatch.setattr(faces, "detect_faces", lambda image, name="image": [faces.Face(0, 0, 30, 30, 1.0)])
    before = sorted(studio.config.out.iterdir())
    ended = {}

    def personalize() -> None:
        ended["returned"] = handler(page, "personalize")(str(FACE), str(tiny_sd), True, 2000, 4, 0, 1, 0,
                                                         request=SimpleNamespace(session_hash="tab-1"))

    thread = threading.Thread(target=personalize)
    thread.start()
    while studio._running is None and thread.is_alive():
        time.sleep(0.01)
    said = studio.stop(owner="tab-1", wait=60)  # the tab's own Stop (a closed tab and Ctrl-C stop it the same way)
    thread.join(60)
    assert said.startswith("stopped the personalization")
    line, rest = status_and_the_rest(page, "personalize", ended["returned"], "job-line")
    assert line == "stopped: the personalization was stopped at its next step; nothing of it was kept"
    assert all(value == gr.update() for value in rest)
    assert sorted(studio.config.out.iterdir()) == before  # nothing of it was kept
