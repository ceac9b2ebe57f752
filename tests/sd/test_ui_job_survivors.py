"""The ui's job plumbing where review DU's mutation audit found nothing pinning it (task FGA).

Each test fails on one of the audit's mutants (named in its comment) and passes on the code as it is. No model
loads and no server starts: a job is held in a thread, which checks the stop flag (or, as a model still loading,
never does) until the test lets it end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from lowdim_sd import stopping
from lowdim_sd.ui.studio import Busy, RunSettings, Stopped, Studio, StudioConfig

pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


@pytest.fixture
def studio(tmp_path) -> Iterator[Studio]:
    yield Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    stopping.withdraw()  # a stop a failing test left asked is not the next test's


class HeldJob:
    """A job of ``owner``'s, running in a thread until ``finish``; ``checks``: it reaches a step every 10 ms (a
    training loop), or never (a model still loading)."""

    def __init__(self, studio: Studio, owner: str = "tab-1", checks: bool = True):
        self.entered, self.done, self.how = threading.Event(), threading.Event(), ""
        self.thread = threading.Thread(target=self._body, args=(studio, owner, checks), daemon=True)
        self.thread.start()
        assert self.entered.wait(10), "the job never started"

    def _body(self, studio: Studio, owner: str, checks: bool) -> None:
        try:
            with studio.job("personalization", owner=owner):
                self.entered.set()
                while not self.done.wait(0.01):
                    if checks:
                        stopping.check()
            self.how = "ran to its end"
        except Stopped:
            self.how = "stopped"

    def finish(self) -> None:
        self.done.set()
        self.thread.join(10)


# heard-check-only-with-listener: the stop check made only when the page passed a listener
def test_a_job_run_from_python_with_no_listener_stops_at_its_next_stage_step(studio):
    """``Studio.personalize/draw/evaluate`` called from Python pass no listener: Stop must still end them at the
    stages the training loops do not check (loading, the preview's pictures, scoring)."""
    hear = studio._heard(None)
    stopping.ask()
    with pytest.raises(KeyboardInterrupt):
        hear("preview", 1, 6)


# heard-check-after-listener: the page told of the step before the stop check
def test_after_stop_the_progress_bar_moves_no_further(studio):
    told: list[tuple] = []
    hear = studio._heard(lambda *step: told.append(step))
    hear("preview", 1, 6)
    stopping.ask()
    with pytest.raises(KeyboardInterrupt):
        hear("preview", 2, 6)
    assert told == [("preview", 1, 6)]


# opens-watch-drops-others: a watch's end removed every watch of its tab
def test_a_refused_second_click_leaves_the_running_job_the_run_its_tab_opens():
    from lowdim_sd.ui.page_parts import OpensMeanwhile

    opens = OpensMeanwhile()
    with opens.watch("tab-1") as first_job:
        with opens.watch("tab-1"):  # a second Personalize, refused as Busy: its watch ends at once
            pass
        assert opens.running("tab-1")
        opens.opened("tab-1")  # the tab opens an earlier run while its first job still trains
        assert first_job.is_set(), "the job's result would cover the run the tab just opened"


# opens-any-owner: a run opened in one tab flagged the jobs of every tab
def test_another_tab_opening_a_run_leaves_this_tabs_result_to_show():
    from lowdim_sd.ui.page_parts import OpensMeanwhile

    opens = OpensMeanwhile()
    with opens.watch("tab-1") as this_tabs_job:
        opens.opened("tab-2")
        assert not this_tabs_job.is_set(), "this tab's finished run would stay off its screen"


# jobline-no-toast: a refusal went only to the job line, with no toast where the eye is
def test_a_refused_job_is_told_in_a_toast_too(monkeypatch):
    import gradio as gr

    from lowdim_sd.ui import page_parts

    toasts: list[str] = []
    monkeypatch.setattr(page_parts, "toast", toasts.append)
    line = gr.HTML()

    @page_parts.job_on_page([line], line)
    def personalize() -> None:
        raise Busy("a drawing is already running (for 3 s); one job runs at a time: wait for it to finish")

    assert "a drawing is already running" in personalize()
    assert toasts == ["a drawing is already running (for 3 s); one job runs at a time: wait for it to finish"]


# claim-before-slot: the run's name (its hidden .NAME.partial folder) claimed before the job slot was
def test_a_personalize_refused_as_busy_leaves_nothing_in_out(studio):
    other_tabs = HeldJob(studio, owner="tab-2")
    try:
        with pytest.raises(Busy):
            studio.personalize(FACE, RunSettings(model="tinyfaces"), owner="tab-1")
        assert list(studio.config.out.iterdir()) == [], "a hidden half-made run folder stays until the next start"
    finally:
        other_tabs.finish()


# stop-wait-ignored: Stop waited its default 10 s whatever it was told
def test_a_stop_told_not_to_wait_returns_at_once(studio):
    loading = HeldJob(studio, checks=False)  # a model still loading: no step to stop at yet
    try:
        started = time.monotonic()
        line = studio.stop(owner="tab-1", wait=0)
        assert time.monotonic() - started < 2 and "has not reached one yet" in line
    finally:
        loading.finish()
    assert loading.how == "ran to its end"  # the stop landed on no step: loading finished first


# closed-tab-waits: the page's unload handler waited for the closed tab's job to end
def test_closing_a_tab_returns_at_once_while_its_job_is_loading(studio):
    from lowdim_sd.ui.page import build_page

    closed = next(fn.fn for fn in build_page(studio).fns.values() if getattr(fn.fn, "__name__", "") == "closed")
    loading = HeldJob(studio, checks=False)
    try:
        started = time.monotonic()
        closed(SimpleNamespace(session_hash="tab-1"))
        assert time.monotonic() - started < 2, "Gradio's unload handler held for the job to reach a step"
    finally:
        loading.finish()


class SlowRelease:
    """The job slot, whose release takes 0.3 s: a job's thread descheduled between its last two lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def locked(self) -> bool:
        return self._lock.locked()

    def release(self) -> None:
        time.sleep(0.3)
        self._lock.release()


# ended-before-release: the job said it ended before it gave the slot back
def test_when_stop_says_the_next_job_can_start_it_can(studio):
    studio._slot = SlowRelease()  # type: ignore[assignment]
    running = HeldJob(studio)
    line = studio.stop(owner="tab-1")
    assert line.endswith("the next job can start")
    with studio.job("drawing", owner="tab-1"):  # refused as Busy if the slot were still held
        pass
    running.thread.join(10)
    assert running.how == "stopped"


# busy-fallback (review DU 8): a click while the server closes was told to wait for "a job", or to press Stop
def test_a_click_while_the_server_closes_is_told_it_closes(studio):
    assert studio.close() is None  # nothing ran; the slot stays held so that no job starts
    with pytest.raises(Busy) as refused, studio.job("personalization", owner="tab-1"):
        pass
    assert str(refused.value) == "the server is closing: no new job starts"
