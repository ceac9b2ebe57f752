"""Edges of the ui's studio and run folders that review DH's mutation audit found no test pinning (task FEX).

Each test fails on one of the audit's mutants (named in its comment) and passes on the code as it is. No model
loads, no browser, no sleep: jobs that overlap are held in threads by events, or in the test's own thread."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

import lowdim_sd.ui.studio as studio_module
from lowdim.errors import LowdimError
from lowdim_sd import stopping
from lowdim_sd.ui.checks import NotOffered
from lowdim_sd.ui.run_folders import PARTIAL, chosen_run, is_run, list_runs, publish_run, read_run, write_record
from lowdim_sd.ui.studio import RunSettings, Stopped, Studio, StudioConfig
from lowdim_sd.ui.studio_notes import no_hypernet_note, run_notes

NAME = "20260101-120000-face"


def finished_work(out: Path, name: str, gallery_file: str = "gallery/00.png") -> Path:
    """A run's hidden folder as the studio leaves it just before the rename, its gallery naming ``gallery_file``."""
    work = out / f".{name}{PARTIAL}"
    (work / "gallery").mkdir(parents=True)
    (work / "adapter.safetensors").write_bytes(b"an adapter")
    Image.new("RGB", (8, 8)).save(work / "gallery" / "00.png")
    if gallery_file != "gallery/00.png":  # the file it names is there too: only its name is wrong
        Image.new("RGB", (8, 8)).save(work / gallery_file, format="PNG")
    write_record(work, name, {"model": "tinyfaces"}, {"fast finetune": 1.0},
                 [{"file": gallery_file, "caption": "reference"}], [])
    return work


# publish-skip-claims-once: `while` -> `if` when skipping names other runs have claimed
def test_a_run_whose_name_is_taken_skips_every_name_another_run_has_claimed(tmp_path):
    work = finished_work(tmp_path, NAME)
    (tmp_path / NAME).mkdir()  # `lowdim personalize -o OUT/NAME`, typed while the ui's run trained
    for claimed in (f"{NAME}-2", f"{NAME}-3"):  # two other servers' runs in flight on the same --out
        (tmp_path / f".{claimed}{PARTIAL}").mkdir()
    assert publish_run(work, tmp_path, NAME) == f"{NAME}-4"
    assert list_runs(tmp_path) == [f"{NAME}-4"]
    for claimed in (f"{NAME}-2", f"{NAME}-3"):  # their claims are still theirs, empty, and no run took the name
        assert list((tmp_path / f".{claimed}{PARTIAL}").iterdir()) == []
        assert not (tmp_path / claimed).exists()


# gallery-match-not-full: GALLERY_FILE.fullmatch -> .match
@pytest.mark.parametrize("file", ["gallery/00.png.html", "gallery/00.pngx"])
def test_a_gallery_file_that_only_starts_like_a_picture_lowdim_writes_is_a_damaged_run(tmp_path, file):
    finished_work(tmp_path, NAME, gallery_file=file).rename(tmp_path / NAME)
    with pytest.raises(LowdimError, match=r"its run.json is damaged \(gallery picture .* is not one lowdim writes"):
        read_run(tmp_path, NAME)
    assert list_runs(tmp_path) == []


def test_a_run_with_a_gallery_picture_lowdim_writes_is_read(tmp_path):  # the two above refuse only the name
    finished_work(tmp_path, NAME).rename(tmp_path / NAME)
    assert [picture.name for picture, _ in read_run(tmp_path, NAME).gallery] == ["00.png"]


# isrun-backslash: `"\\" not in name` dropped from is_run
def test_a_run_name_with_a_backslash_is_no_run_even_where_a_folder_has_that_name(tmp_path):
    """On Windows ``OUT / "x\\..\\..\\NAME"`` is a folder out of ``--out``; on POSIX it is a folder of that odd
    name, which lowdim never makes. Either way it is no run to open."""
    name = "x\\..\\..\\" + NAME
    finished_work(tmp_path, name).rename(tmp_path / name)
    assert json.loads((tmp_path / name / "run.json").read_text())["settings"] == {"model": "tinyfaces"}
    assert not is_run(tmp_path, name)
    with pytest.raises(NotOffered, match=r"^Earlier runs has no run "):
        chosen_run(tmp_path, name)


# note-plural-always: "step{'s' * (ran != 1)}" -> "steps"
@pytest.mark.parametrize(("steps", "said"), [(1, "trained 1 step ("), (2, "trained 2 steps (")])
def test_the_no_hypernetwork_note_counts_its_steps_in_words(steps, said):
    assert said in no_hypernet_note("sd15", steps)


def lowdims_warning(text: str, category: type[Warning] = UserWarning) -> warnings.WarningMessage:
    """A warning as ``catch_warnings(record=True)`` keeps one, warned from lowdim's own code."""
    return warnings.WarningMessage(category(text), category, studio_module.__file__, 1)


# notes-duplicates: `and note not in notes` dropped from run_notes
def test_a_warning_said_twice_during_a_run_is_one_note(tmp_path):
    work, final = tmp_path / f".{NAME}{PARTIAL}", tmp_path / NAME
    said = [lowdims_warning(f"no preview: {work} is full"), lowdims_warning("other"),
            lowdims_warning(f"no preview: {work} is full")]
    assert run_notes(said, work, final) == [f"no preview: {final} is full", "other"]


# top-package-innermost (_top_package keeps the innermost package), worth-any-warning (any category is a note)
def test_lowdims_own_warnings_from_any_of_its_packages_are_notes_and_libraries_are_not(tmp_path):
    import PIL.Image

    import lowdim.errors

    said = [lowdims_warning("from lowdim_sd/ui"),  # a package inside lowdim_sd: its top package is lowdim_sd
            warnings.WarningMessage(UserWarning("from lowdim"), UserWarning, lowdim.errors.__file__, 1),
            warnings.WarningMessage(UserWarning("from PIL"), UserWarning, PIL.Image.__file__, 1),
            lowdims_warning("a deprecation", DeprecationWarning)]
    assert run_notes(said, tmp_path / f".{NAME}{PARTIAL}", tmp_path / NAME) == ["from lowdim_sd/ui", "from lowdim"]


# hypernet-note-when-used (`not used` dropped), record-asked-hypernet (the record keeps the box, not what ran)
@pytest.mark.parametrize(("first_stage", "ran_from_one"), [("hypernetwork", True), ("initial adapter", False)])
def test_the_run_records_and_notes_what_it_started_from_not_what_was_asked(tmp_path, monkeypatch, first_stage,
                                                                            ran_from_one):
    """The box asked for a hypernetwork on a model the studio cannot tell ships one (a copy of TinyFaces in a
    folder of its own, say): personalize's own stage says what ran, and only a run from zero has the note."""
    import lowdim_sd.personalize

    def personalize(job, progress):  # what personalize reports, without a model
        (job.out / "adapter.safetensors").write_bytes(b"an adapter")
        return SimpleNamespace(stages={first_stage: 0.1, "fast finetune": 1.0}, gallery=[])

    monkeypatch.setattr(lowdim_sd.personalize, "personalize", personalize)
    monkeypatch.setattr(studio_module, "ships_a_hypernet", lambda model: False)
    photo = tmp_path / "me.png"
    Image.new("RGB", (8, 8)).save(photo)
    studio = Studio(StudioConfig(out=tmp_path / "ui"))
    work = studio.config.out / f".{NAME}{PARTIAL}"
    work.mkdir()
    studio._personalize_into(work, NAME, photo, "my-faces", RunSettings(model="my-faces", use_hypernet=True))
    record = json.loads((work / "run.json").read_text())
    assert record["settings"]["use_hypernet"] is ran_from_one
    notes = [note for note in record["notes"] if "ships no hypernetwork" in note]
    assert notes == ([] if ran_from_one else [no_hypernet_note("my-faces", None)])


# subject-server-model: Draw of a run uses the model the server was started with, not the run's
def test_a_run_is_drawn_on_the_model_it_was_made_with_not_the_one_served(tmp_path):
    out = tmp_path / "ui"
    finished_work(out, NAME).rename(out / NAME)  # its record says tinyfaces
    studio = Studio(StudioConfig(model="sd15", out=out))
    subject = studio.subject(NAME)
    assert (subject.model, subject.name, subject.adapter.name) == ("tinyfaces", NAME, f"{NAME}.lowdim.safetensors")


def held_by(studio: Studio, what: str, owner: str) -> tuple[threading.Thread, threading.Event, list[str]]:
    """``studio`` running a job of ``owner``'s in a thread until the returned event is set; then the job takes
    its next step, and the list says how it ended ("done", or its Stopped line)."""
    held, done, ended = threading.Event(), threading.Event(), []

    def hold() -> None:
        try:
            with studio.job(what, owner):
                held.set()
                done.wait(30)
                stopping.check()  # the job's next step
            ended.append("done")
        except Stopped as stopped:
            ended.append(str(stopped))
    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(30)
    return thread, done, ended


# stop-empty-owner-any: `owner is not None` -> `owner`: a session of no name stopped any tab's job
def test_a_stop_from_a_session_with_an_empty_name_leaves_another_tabs_job_running(tmp_path):
    studio = Studio(StudioConfig(out=tmp_path / "ui"))
    thread, done, ended = held_by(studio, "personalization", "tab-1")
    try:
        assert studio.stop(owner="", wait=0).startswith("nothing of yours is running: a personalization started in")
    finally:
        done.set()
        thread.join()
    assert ended == ["done"]


# busy-reads-running: busy() read from the running job, not the slot: a closing server held it with no job
def test_a_closing_server_is_busy_though_no_job_runs(tmp_path):
    studio = Studio(StudioConfig(out=tmp_path / "ui"))
    assert not studio.busy()
    assert studio.close() is None
    assert studio.busy()


class SlotOpeningToAJob:
    """The studio's job slot, handed straight to the next job as the one before releases it (another tab's job
    whose click lands just then), here without a race to wait for: no other thread can take it in between."""

    def __init__(self, next_job: Callable[[], None]):
        self._lock, self._handed_to = threading.Lock(), -1
        self._next_job: Callable[[], None] | None = next_job

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._handed_to == threading.get_ident():  # the next job, started by release below
            self._handed_to = -1
            return True
        return self._lock.acquire(blocking, timeout)

    def locked(self) -> bool:
        return self._lock.locked()

    def release(self) -> None:
        next_job, self._next_job = self._next_job, None
        if next_job is None:
            self._lock.release()
            return
        self._handed_to = threading.get_ident()
        next_job()


# release-before-clear: the slot released before the ended job is cleared: the next job, started in between, is
# then cleared as if it had ended, and its own tab's Stop says nothing is running
def test_a_job_started_as_the_last_one_frees_the_slot_can_be_stopped(tmp_path):
    studio = Studio(StudioConfig(out=tmp_path / "ui"))
    with ExitStack() as tab_2:
        studio._slot = SlotOpeningToAJob(lambda: tab_2.enter_context(studio.job("drawing", "tab-2")))
        with studio.job("personalization", "tab-1"):
            pass
        assert studio.busy()
        assert studio.stop(owner="tab-2", wait=0).startswith("the drawing stops at its next step")
    assert not studio.busy() and studio.stop(owner="tab-2", wait=0) == "nothing is running"


@pytest.fixture
def close_has_asked(monkeypatch) -> Callable[[int], None]:
    """Wait until the studio's close has asked the job in flight to stop ``times`` more times: each of its looks
    at the slot asks once."""
    asks, asked, real_ask = [0], threading.Condition(), stopping.ask

    def ask() -> None:
        real_ask()
        with asked:
            asks[0] += 1
            asked.notify_all()
    monkeypatch.setattr(stopping, "ask", ask)

    def wait_for(times: int) -> None:
        with asked:
            seen = asks[0]
            assert asked.wait_for(lambda: asks[0] >= seen + times, timeout=30)
    return wait_for


# close-first-job-only: close names the job in flight when it was called, not the one it stopped
def test_closing_names_the_job_that_took_the_slot_while_it_waited(tmp_path, close_has_asked):
    studio, closed = Studio(StudioConfig(out=tmp_path / "ui")), []
    with ExitStack() as tab_2:
        studio._slot = SlotOpeningToAJob(lambda: tab_2.enter_context(studio.job("drawing", "tab-2")))
        with studio.job("personalization", "tab-1"):
            closing = threading.Thread(target=lambda: closed.append(studio.close()), daemon=True)
            closing.start()
            close_has_asked(1)
        close_has_asked(2)  # the second look began after the drawing took the slot
    closing.join(30)
    assert closed == ["drawing"]


# close-never-tells: "more than a second" -> "more than a minute" before the server says it waits for the job
def test_closing_says_once_that_it_waits_for_a_job_slower_than_a_second_to_stop(tmp_path, monkeypatch,
                                                                               close_has_asked):
    clock = [100.0]
    monkeypatch.setattr(studio_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    studio, told, closed = Studio(StudioConfig(out=tmp_path / "ui")), [], []
    thread, done, ended = held_by(studio, "personalization", "tab-1")
    closing = threading.Thread(target=lambda: closed.append(studio.close(waiting=told.append)), daemon=True)
    try:
        closing.start()
        close_has_asked(2)
        clock[0] += 0.9
        close_has_asked(2)
        assert told == []
        clock[0] += 0.2
        close_has_asked(2)
        assert told == ["personalization"]
    finally:
        done.set()
        thread.join(30)
        closing.join(30)
    assert told == ["personalization"] and closed == ["personalization"]
    assert ended == ["stopped: the personalization was stopped at its next step, as the server is closing; "
                     "nothing of it was kept"]
