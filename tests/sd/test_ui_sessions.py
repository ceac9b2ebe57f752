"""``lowdim ui`` with several tabs (or clients) on one server: each job belongs to the page session that started it.

Stop ends only the caller's own job, and says so when another tab's runs; the Busy line tells another tab to
wait, not to press a Stop that is not theirs; a closed tab stops the Draw or Evaluate it started, as it stops a
personalization; and the server's Ctrl-C tells the stopped job's client the page's own line.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ui_requests import handler  # tests/sd, on the path as pytest puts it

from lowdim_sd import stopping
from lowdim_sd.ui.studio import Busy, RunSettings, Stopped, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

# Gradio's queue calls pandas in ways pandas 3 deprecates; a user never sees it (DeprecationWarning), pytest does.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
ANOTHER_TABS = "nothing of yours is running: a personalization started in another tab is running, and is not stopped"


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd):
    """(studio, one finished run on the tiny pipeline): Draw and Evaluate need a run, and the tests only read it."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    folder = tmp_path_factory.mktemp("sessions")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder,
                       "face")[0]
    studio = Studio(StudioConfig(model="tinyfaces", out=folder / "ui"))
    return studio, studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))


class Held:
    """A job of ``owner`` holding the studio's slot in a thread of its own, as Gradio runs one, taking a step
    every 10 ms until ``end``; ``stopped`` says whether a stop ended it."""

    def __init__(self, studio: Studio, what: str, owner: str):
        self.started, self.finish, self.stopped = threading.Event(), threading.Event(), None
        self.thread = threading.Thread(target=self._hold, args=(studio, what, owner))
        self.thread.start()
        assert self.started.wait(10)

    def _hold(self, studio: Studio, what: str, owner: str) -> None:
        try:
            with studio.job(what, owner):
                self.started.set()
                while not self.finish.wait(0.01):
                    stopping.check()  # where a real job's next step would stop
            self.stopped = False
        except Stopped:
            self.stopped = True

    def end(self) -> bool:
        self.finish.set()
        self.thread.join(30)
        return self.stopped


def busy_line(studio: Studio, owner: str) -> str:
    with pytest.raises(Busy) as caught, studio.job("drawing", owner):
        pass
    return str(caught.value)


def test_stop_from_another_tab_stops_nothing_and_says_whose_job_runs(made):
    studio, _ = made
    held = Held(studio, "personalization", "tab-1")
    try:
        assert studio.stop(owner="tab-2", wait=0) == ANOTHER_TABS
        mine = busy_line(studio, "tab-1")
        theirs = busy_line(studio, "tab-2")
    finally:
        assert held.end() is False  # tab-2's Stop asked nothing of it
    assert mine.endswith("wait for it to finish, or press Stop")
    assert "another tab" in theirs and "wait for it to finish" in theirs and "Stop" not in theirs
    assert "\n" not in theirs


def test_the_stop_button_stops_only_its_own_sessions_job(made):
    from lowdim_sd.ui.page import build_page

    studio, _ = made
    stop = handler(build_page(studio), "stop")
    held = Held(studio, "personalization", "tab-1")
    try:
        assert stop(request=SimpleNamespace(session_hash="tab-2")) == ANOTHER_TABS
        assert stop(request=SimpleNamespace(session_hash="tab-1")).startswith("stopped the personalization")
    finally:
        assert held.end() is True


def stopping_by(studio: Studio, owner: str):
    """A listener that, on the job's first report, does what a closed tab of session ``owner`` does."""
    def hear(label: str, done: int, total: int) -> None:
        studio.stop(owner=owner, wait=0)
    return hear


@pytest.mark.parametrize("job", ["draw", "evaluate"])
def test_a_closed_tab_stops_the_draw_or_evaluate_it_started_and_no_other(made, job):
    studio, record = made

    def start(owner: str, closed_tab: str):
        hear = stopping_by(studio, closed_tab)
        if job == "draw":
            return studio.draw(record.name, "a [V] face", steps=1, count=8, listener=hear, owner=owner)
        return studio.evaluate([FACE, FACE], FACE, "a [V] face", metrics="tinyfaces-image", listener=hear,
                               owner=owner)

    assert start("tab-1", closed_tab="tab-2")  # another tab's closing: it ran to its end
    with pytest.raises(Stopped):
        start("tab-1", closed_tab="tab-1")


def test_draw_and_evaluate_on_the_page_belong_to_the_session_that_pressed_them(made, monkeypatch):
    from lowdim_sd.ui.page import build_page

    studio, record = made
    page = build_page(studio)
    owners = []
    monkeypatch.setattr(studio, "draw", lambda *args, owner="", **kwargs: owners.append(owner) or [])
    monkeypatch.setattr(studio, "evaluate", lambda *args, owner="", **kwargs: owners.append(owner) or "")
    tab = SimpleNamespace(session_hash="tab-1")
    handler(page, "draw_more")({"run": record.name}, "tinyfaces", "a [V] face", 1.0, "1", 0, 1, 1, request=tab)
    handler(page, "run")([str(FACE)], str(FACE), "a [V] face", "sks", "", request=tab)
    assert owners == ["tab-1", "tab-1"]


def test_the_client_of_a_job_the_servers_ctrl_c_stopped_gets_the_pages_line(tmp_path, tiny_sd):
    """Not Gradio's "Server stopped unexpectedly.": the server waits (a bounded while) for its queue to deliver
    the stopped job's own line before it closes."""
    gradio_client = pytest.importorskip("gradio_client")
    from local_port import free_port

    from lowdim_cli.ui_command import close_after_a_stop
    from lowdim_sd.ui.page import build_page

    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    record = studio.personalize(FACE, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    drawn = studio.draw

    def slow_to_unwind(*args, **kwargs):  # its line reaches Gradio's queue only after the slot is free
        try:
            return drawn(*args, **kwargs)
        finally:
            time.sleep(0.5)

    studio.draw = slow_to_unwind
    page, port = build_page(studio), free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(record.name, api_name="/open_run")
        job = client.submit("tinyfaces", "a [V] face", 1.0, "1", 0, 100, 16, api_name="/draw_more")
        while studio._running is None:
            assert not job.done(), job.result()
            time.sleep(0.05)
        with pytest.raises(KeyboardInterrupt, match="the drawing in flight was stopped"):
            close_after_a_stop(page, studio)
    finally:
        page.close(verbose=False)
    _, stages = job.result(timeout=30)  # Draw's pictures, and the stages box, where the page says it
    assert stages == "stopped: the drawing was stopped at its next step, as the server is closing; nothing of it " \
                     "was kept"
