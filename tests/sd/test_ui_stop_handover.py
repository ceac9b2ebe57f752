"""A Stop reports its own job, even when another tab's job takes the slot the moment the stopped one frees it.

The Stop asks the job under the studio's handover lock, lets go, then waits for that job to end; a job of another tab
may start in between (review FDM). The Stop then waited its whole ``wait`` on the other job and said the stopped one
"has not reached" its next step, though it had stopped at once.
"""

from __future__ import annotations

import threading
import time

import pytest
from ui_events import another_tab_running  # tests/sd, on the path as pytest puts it

from lowdim_sd import stopping
from lowdim_sd.ui.studio import Busy, Stopped, Studio, StudioConfig

WAIT = 5.0  # the Stop's wait: a Stop that waits on the wrong job takes all of it


@pytest.fixture
def studio(tmp_path) -> Studio:
    return Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))


class PausedAfterStopsAsk:
    """The studio's handover lock, holding the Stop's thread just after it lets go (the gap between asking the job
    and waiting for its end) until ``go_on`` is set: the only place the gap can be widened from outside."""

    def __init__(self, stop_thread_name: str):
        self._lock, self._stop_thread_name = threading.Lock(), stop_thread_name
        self.in_gap, self.go_on = threading.Event(), threading.Event()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        if threading.current_thread().name == self._stop_thread_name and not self.in_gap.is_set():
            self.in_gap.set()
            self.go_on.wait(10)


def stoppable_drawing(studio: Studio, started: threading.Event, ended: dict) -> None:
    """A drawing of tab-1 taking a step every 10 ms until stopped, as a real job checks at its next step."""
    try:
        with studio.job("drawing", "tab-1"):
            started.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                stopping.check()
                time.sleep(0.01)
        ended["how"] = "finished"
    except Stopped:
        ended["how"] = "stopped"


def test_a_stop_reports_its_own_job_when_another_tabs_job_starts_as_it_ends(studio):
    gap = PausedAfterStopsAsk("the Stop")
    studio._handover = gap  # type: ignore[assignment]  # private: the one lock the gap opens after
    started, ended = threading.Event(), {}
    drawing = threading.Thread(target=stoppable_drawing, args=(studio, started, ended))
    drawing.start()
    assert started.wait(10)

    said: dict = {}

    def press_stop() -> None:
        said["line"] = studio.stop(owner="tab-1", wait=WAIT)
        said["at"] = time.monotonic()

    stop = threading.Thread(target=press_stop, name="the Stop")
    stop.start()
    assert gap.in_gap.wait(10)  # the Stop has asked the drawing and let go of the handover lock
    drawing.join(10)
    assert ended == {"how": "stopped"}  # the drawing stopped at its next step, freeing the slot
    with another_tab_running(studio):  # another tab's personalization takes the slot in the gap
        closed = time.monotonic()
        gap.go_on.set()
        stop.join(WAIT * 2)
        assert said["line"] == "stopped the drawing: nothing of it was kept; the next job can start"
        assert said["at"] - closed < WAIT / 5  # it did not wait on the other tab's job
        # that job keeps running: it still holds the slot
        with pytest.raises(Busy, match="started in another tab is already running"), studio.job("scoring", "tab-1"):
            pass
        assert studio.stop(owner="tab-1", wait=0).startswith("nothing of yours is running")
