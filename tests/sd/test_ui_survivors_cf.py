"""What review CF's mutation audit found unpinned in the ui's job plumbing: a closed tab's stop, each control's
value reaching the job it starts, Stop's line for a job that ended first, and Evaluate's prompt reaching the scoring.
Each test here fails on the mutant the review names (in its docstring) and runs without a browser."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import lowdim_sd.eval.job as eval_job
import lowdim_sd.personalize as personalize_module
from lowdim_sd import faces, stopping
from lowdim_sd.ui.drawing import DrawSettings
from lowdim_sd.ui.page import asked_run
from lowdim_sd.ui.page_draw import asked_draw
from lowdim_sd.ui.studio import RunSettings, Stopped, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


@pytest.fixture
def studio(tmp_path) -> Studio:
    return Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))


def test_closing_one_tab_leaves_another_tabs_job_running(studio):
    """Review CF2 (mutant: the page's unload handler stops with no owner). Reloading a tab must not end the
    personalization another person's tab is running."""
    from lowdim_sd.ui.page import build_page

    closed = next(fn.fn for fn in build_page(studio).fns.values() if getattr(fn.fn, "__name__", "") == "closed")
    entered, done, ended = threading.Event(), threading.Event(), {}

    def tab_1_job() -> None:
        try:
            with studio.job("personalization", owner="tab-1"):
                entered.set()
                while not done.is_set():
                    stopping.check()
                    time.sleep(0.01)
            ended["how"] = "ran to its end"
        except Stopped:
            ended["how"] = "stopped"

    job = threading.Thread(target=tab_1_job)
    job.start()
    assert entered.wait(10)
    closed(SimpleNamespace(session_hash="tab-2"))
    time.sleep(0.2)  # a stop asked lands at the job's next check, well within this
    done.set()
    job.join(10)
    assert ended == {"how": "ran to its end"}


def test_draws_controls_are_the_draws_settings_value_by_value():
    """Review CF9 (mutant: the Picture seed read, checked, then dropped)."""
    subject, settings = asked_draw({"run": "r"}, "tinyfaces", "a [V] face", 0.5, "te=0", 5, 3, 2)
    assert (subject, settings) == ("r", DrawSettings("a [V] face", 0.5, 5, 3, 2, "te=0"))


def test_personalizes_controls_are_the_runs_settings_value_by_value():
    """Review CF9 (mutant: the Rank read, checked, then replaced by 4)."""
    photo, settings = asked_run("p.png", "tinyfaces", False, 7, 8, 9, 11, 1)
    assert (photo, settings) == ("p.png", RunSettings(model="tinyfaces", use_hypernet=False, steps=7, rank=8, seed=9,
                                                      face_index=1, preview_steps=11))


def test_the_personalization_gets_every_setting_the_page_asked(tmp_path, tiny_sd, monkeypatch):
    """Review CF1 (mutants: the job given seed 0, rank 4, no face or 30 gallery steps whatever was asked, while
    run.json records what was asked)."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, tmp_path,
                       "face")[0]
    seen = {}

    def capture(job, progress=True, model=None):
        seen["job"] = job
        raise RuntimeError("captured")

    monkeypatch.setattr(personalize_module, "personalize", capture)
    two = [faces.Face(1, 1, 20, 20, 1.0), faces.Face(5, 5, 30, 30, 1.0)]
    monkeypatch.setattr(faces, "detect_faces", lambda image, name="image": two)
    studio = Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui"))
    asked = RunSettings(model=str(tiny_sd), steps=3, rank=8, seed=7, face_index=1, crop=True, preview_steps=5)
    with pytest.raises(RuntimeError, match="captured"):
        studio.personalize(face, asked)
    job = seen["job"]
    assert (job.steps, job.rank, job.seed, job.face_index, job.crop, job.preview_steps) == (3, 8, 7, 1, True, 5)


def _stop_reaching(studio: Studio, stops_at_a_step: bool) -> str:
    """The line of a Stop pressed while a drawing runs, which reaches the job's next step (``stopping.check``)
    or finds the drawing already past its last one."""
    entered, release = threading.Event(), threading.Event()

    def drawing() -> None:
        try:
            with studio.job("drawing", "tab"):
                entered.set()
                release.wait(10)
                if stops_at_a_step:
                    stopping.check()
        except Stopped:
            pass

    job = threading.Thread(target=drawing)
    job.start()
    assert entered.wait(10)
    line = {}
    stop = threading.Thread(target=lambda: line.setdefault("said", studio.stop(owner="tab", wait=10)))
    stop.start()
    time.sleep(0.2)  # the Stop has asked and waits for the job to end
    release.set()
    job.join(10)
    stop.join(10)
    return line["said"]


def test_a_stop_that_finds_the_job_past_its_last_step_says_so_after_an_earlier_job_was_stopped(studio):
    """Review CF11 (mutant: a job starting leaves the last job's 'stopped' set), so the Stop said 'nothing of it
    was kept' of a drawing whose pictures were kept and shown."""
    assert _stop_reaching(studio, stops_at_a_step=True) == \
        "stopped the drawing: nothing of it was kept; the next job can start"
    assert _stop_reaching(studio, stops_at_a_step=False) == "the drawing ended before it could be stopped"


def test_their_prompt_reaches_the_prompts_file_the_scoring_reads(studio, monkeypatch):
    """Review CF10 (mutant: every picture scored against the default prompt; TinyFaces' metrics never read it,
    CLIP-T does)."""
    seen = {}

    def capture(job, progress):
        seen.update(json.loads((job.folder / "prompts.json").read_text()))
        raise RuntimeError("captured")

    monkeypatch.setattr(eval_job, "run_eval", capture)
    with pytest.raises(RuntimeError, match="captured"):
        studio.evaluate([FACE], FACE, "a [V] face as a sketch", token="zzq", metrics="tinyfaces-image")
    assert seen == {"images": [{"image": "face.png", "prompt": "a [V] face as a sketch"}], "token": "zzq"}


class _SlotTakenOnRelease:
    """The studio's job slot, taken by another tab's job the instant the Stop's thread lets it go: the moment
    between the stopped job ending and the Stop reading how it ended."""

    def __init__(self, studio: Studio) -> None:
        self.lock, self.studio, self.stopper, self.taken = studio._slot, studio, threading.current_thread(), None

    def acquire(self, *args, **kwargs) -> bool:
        return self.lock.acquire(*args, **kwargs)

    def release(self) -> None:
        self.lock.release()
        if threading.current_thread() is self.stopper and self.taken is None:
            self.taken = self.studio.job("drawing", "tab-2")
            self.taken.__enter__()


def test_a_stop_says_it_stopped_the_job_even_when_another_tabs_job_starts_as_it_ends(studio):
    """Review CF11's race: the next job's start cleared 'stopped' before the Stop read it, so the Stop said the job
    'ended before it could be stopped' of one it had stopped."""
    entered = threading.Event()

    def drawing() -> None:
        try:
            with studio.job("drawing", "tab"):
                entered.set()
                while True:
                    stopping.check()
                    time.sleep(0.01)
        except Stopped:
            pass

    job = threading.Thread(target=drawing)
    job.start()
    assert entered.wait(10)
    slot = studio._slot = _SlotTakenOnRelease(studio)
    try:
        said = studio.stop(owner="tab", wait=10)
        assert said == "stopped the drawing: nothing of it was kept; the next job can start"
    finally:
        job.join(10)
        if slot.taken is not None:
            slot.taken.__exit__(None, None, None)
