"""What the web page does, as plain Python: personalize, reopen, draw, score, stop.

Nothing here imports Gradio. A ``Studio`` serves one ``lowdim ui`` process:

* one job at a time: a second request while one runs is refused at once with ``Busy``, never queued;
* each personalization runs in a hidden ``OUT/.NAME.partial`` folder, renamed to ``OUT/NAME`` only
  when everything is written (``run_folders``), so a failure, a stop or a killed server never leaves a
  half-written run among the finished ones;
* personalization is ``lowdim_sd.personalize.personalize`` itself, the CLI's code path, with the
  exports every tool reads; its stages and bars reach the page through ``runs.listen``;
* a job stops at its next step when asked (``stop``, ``close``): the flag of ``lowdim_sd.stopping``, which
  the training loops check at each step and the studio's listener at every other bar's step.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_sd import runs, stopping
from lowdim_sd.job_fields import PathField, job_dataclass, path_field
from lowdim_sd.ui.checks import DENOISING_STEPS, MAX_FINETUNE_STEPS, RANKS, check_model, check_number, check_seed
from lowdim_sd.ui.drawing import Drawer, Drawn, DrawSettings, Subject
from lowdim_sd.ui.photos import advice_for_the_page, check_face_choice, check_photo
from lowdim_sd.ui.run_folders import (
    EXPORTS,
    PARTIAL,
    RunRecord,
    claim_run_name,
    clean_partials,
    publish_run,
    read_run,
    write_record,
)
from lowdim_sd.ui.scoring import metric_names, scored

# Looked up here when a run ends (tests/sd/test_ui_studio_edges.py patches studio.ships_a_hypernet).
from lowdim_sd.ui.studio_notes import no_hypernet_note, run_notes, ships_a_hypernet

Listener = Callable[[str, int, int], None]  # (label, done, total): a stage starting is (label, 0, 1)
SCORING_BAR = "scoring"  # Evaluate's bar, which counts scores: each metric on each picture


class Busy(LowdimError):
    """Another job of this process is running."""


class Stopped(LowdimError):
    """The job was stopped on request (the Stop button, a closed tab, the server's Ctrl-C)."""


# How a refusal or Stop names another tab's job: the page finds those lines by it (page_handlers.refresh).
ANOTHER_TABS_JOB = "started in another tab"
KEPT_CLOSED_TABS = 64  # closed tabs' lines kept for their reload (Studio.closed_tab_line); an older one goes


@job_dataclass(frozen=True)
class StudioConfig:
    """What ``lowdim ui`` was started with."""

    model: str = "tinyfaces"
    out: PathField = path_field(default=Path("lowdim-ui"))  # a str from Python, as every job takes (job_fields)
    model_config: str | None = None
    device: str = "auto"
    dtype: str = "auto"


@dataclass(frozen=True)
class RunSettings:
    """What the page asks of one personalization; None: the paper's recipe (the CLI's defaults)."""

    model: str
    # None: the model's hypernetwork if it ships one (the CLI's default); True (the page's ticked box): the same,
    # and a model with none is a note on the run; False: the LoRA starts from zero
    use_hypernet: bool | None = None
    steps: int | None = None
    rank: int = 4
    seed: int = 0
    face_index: int | None = None
    crop: bool | None = None  # cut the photo to the aligned face; None: the model's default (as the CLI)
    preview_steps: int = 30

    def check(self) -> None:
        """Each number in one line naming its control on the page."""
        if self.steps is not None:
            check_number(self.steps, "Finetune steps", 1, MAX_FINETUNE_STEPS)
        check_number(self.rank, "Rank", *RANKS)
        check_seed(self.seed, "Run seed")
        check_number(self.preview_steps, "Gallery denoising steps", *DENOISING_STEPS)


@dataclass
class Job:
    what: str  # "personalization": the kind of job
    since: float  # time.monotonic()
    owner: str  # the page session that started it ("": none said), whose closed tab stops it
    run: str = ""  # the run a personalization makes, once named: what a closed tab's line names
    # How this job ended, set once before ``ended``: a Stop waits on its own job's end, never on the slot, which
    # another tab's job may take the moment this one frees it.
    stopped: bool = False
    closed: bool = False  # asked to stop as its tab was closed or reloaded: no page of it is left to say so
    ended: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)


class Studio:
    """One ``lowdim ui`` process: its settings, its one job slot and its cached model for drawing."""

    def __init__(self, config: StudioConfig, tell: Callable[[str], None] | None = None):
        self.config = config
        self._tell = tell or _on_the_console  # the server's terminal: a closed tab's stopped job is said there
        self._closed_tabs: dict[str, str] = {}  # by owner: its closed tab's stopped job, for that tab reloaded
        self._slot = threading.Lock()
        # Held while a job becomes or stops being the one running, and while a Stop reads and asks it: a Stop read
        # for one job must never land on the next (a closed tab's, as another tab's job starts).
        self._handover = threading.Lock()
        self._running: Job | None = None
        self._closing = False  # the server is closing: a job stopped now says so to its client
        self._drawer = Drawer(config.model_config, config.device, config.dtype)
        runs.check_folder_target(config.out, "--out")  # a file there (or above) is one line, not a traceback
        config.out.mkdir(parents=True, exist_ok=True)
        clean_partials(config.out)

    @contextmanager
    def job(self, what: str, owner: str = "") -> Iterator[Job]:
        """Hold the process's one job slot, or refuse at once saying what holds it; a stop asked of the job
        ends it as ``Stopped``. Yields the job, for a personalization to name its run (``Job.run``)."""
        if not self._slot.acquire(blocking=False):
            if self._closing:  # ``close`` keeps the slot: waiting or pressing Stop would start nothing
                raise Busy("the server is closing: no new job starts")
            holder = self._running or Job("job", time.monotonic(), owner)
            # Stop ends only its own session's job: telling another tab to press it would promise nothing.
            whose, advice = ("", ", or press Stop") if holder.owner == owner else (f" {ANOTHER_TABS_JOB}", "")
            raise Busy(f"a {holder.what}{whose} is already running (for {time.monotonic() - holder.since:.0f} s); "
                       f"one job runs at a time: wait for it to finish{advice}")
        running = Job(what, time.monotonic(), owner)
        with self._handover:
            stopping.withdraw()  # a stop asked of an earlier job that ended first is not this one's
            self._running = running
        try:
            with command_line():  # the shared checks speak the CLI's words, which the page's terms rewrite
                yield running
        except KeyboardInterrupt:
            running.stopped = True
            raise Stopped(self._stopped_line(running)) from None
        finally:
            with self._handover:
                self._running = None
                stopping.withdraw()
            self._slot.release()
            running.ended.set()  # after the release: a Stop that hears it says the next job can start

    def _stopped_line(self, job: Job) -> str:
        """A stopped job's line. A closed tab's job is said on the server's console, and kept for the tab's
        reload (``closed_tab_line``): the page that started it, and would show its line, is gone."""
        why = ", as the server is closing" if self._closing else ""
        if job.closed and not self._closing:
            named = f"the {job.what}" + (f" (run {job.run})" if job.run else "")
            self._tell(f"lowdim ui: stopped {named} at its next step, as the tab that started it was closed or "
                       f"reloaded; nothing of it was kept")
            with self._handover:
                self._closed_tabs.pop(job.owner, None)  # re-added last: the oldest first in line to go
                self._closed_tabs[job.owner] = (f"stopped: {named} was stopped at its next step, as this tab was "
                                                f"reloaded (or closed) while it ran; nothing of it was kept")
                while len(self._closed_tabs) > KEPT_CLOSED_TABS:
                    del self._closed_tabs[next(iter(self._closed_tabs))]
        return f"stopped: the {job.what} was stopped at its next step{why}; nothing of it was kept"

    def closed_tab_line(self, owner: str | None) -> str | None:
        """The line of the job that ``owner``'s tab started and its closing or reload stopped, once (the reloaded
        tab shows it); None when there is none (yet: the job stops at its next step)."""
        with self._handover:
            return self._closed_tabs.pop(owner, None) if owner else None

    def busy(self) -> bool:
        """Whether a job holds the slot now (or the server is closing), for the page to keep what it shows: a
        moment later it may differ, so a job asked for still learns from ``job`` itself whether it runs."""
        return self._slot.locked()

    def stop(self, owner: str | None = None, wait: float = 10.0, tab_closed: bool = False) -> str:
        """Stop the job in flight at its next step (only ``owner``'s, when given: a page session stops only the
        job it started); wait up to ``wait`` seconds for it to end. Returns the line that says what happened.
        ``tab_closed``: the owner's tab was closed or reloaded; the job's end is said elsewhere (``_stopped_line``)."""
        with self._handover:
            running = self._running
            if running is None:
                return "nothing is running"
            if owner is not None and running.owner != owner:
                return (f"nothing of yours is running: a {running.what} {ANOTHER_TABS_JOB} is running, and is "
                        f"not stopped")
            running.closed = running.closed or tab_closed
            stopping.ask()
        if not running.ended.wait(wait):  # this job's end: another tab's job may hold the slot by then
            return f"the {running.what} stops at its next step; it has not reached one yet (a model still loading?)"
        if not running.stopped:  # it ended before its next step: done, or failed with its own message
            return f"the {running.what} ended before it could be stopped"
        return f"stopped the {running.what}: nothing of it was kept; the next job can start"

    def close(self, waiting: Callable[[str], None] = lambda what: None) -> str | None:
        """Stop the job in flight and wait for it to end, then keep the slot so that no other starts (the
        server is closing). Returns the kind of job stopped ('personalization'), None when nothing ran;
        ``waiting(what)`` is called once when the job takes more than a second to reach its next step."""
        stopped, started = self._running, time.monotonic()
        told, self._closing = False, True
        while not self._slot.acquire(timeout=0.1):
            stopped = self._running or stopped
            stopping.ask()  # again each time: a job starting now withdraws an earlier ask
            if not told and stopped is not None and time.monotonic() - started > 1:
                waiting(stopped.what)
                told = True
        stopping.withdraw()
        return stopped.what if stopped is not None else None

    def _heard(self, listener: Listener | None) -> Listener:
        """The page's listener, after the stop check: the training loops check at each step themselves, this
        makes every other stage (loading, the preview's pictures, drawing, scoring) stop at its next step."""
        def hear(label: str, done: int, total: int) -> None:
            stopping.check()
            if listener is not None:
                listener(label, done, total)
        return hear

    def personalize(self, photo: str | Path, settings: RunSettings, listener: Listener | None = None,
                    owner: str = "") -> RunRecord:
        """``lowdim personalize`` on the photo, into a new run folder that appears only once complete."""
        photo, model = checked_request(photo, settings)
        with self.job("personalization", owner) as running:
            out = self.config.out
            name = running.run = claim_run_name(out, photo)
            work = out / f".{name}{PARTIAL}"
            try:
                with runs.listen(self._heard(listener)), advice_for_the_page():
                    self._personalize_into(work, name, photo, model, settings)
                name = publish_run(work, out, name)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            return read_run(out, name)

    def _personalize_into(self, work: Path, name: str, photo: Path, model: str, settings: RunSettings) -> None:
        from lowdim_sd.personalize import PersonalizeJob, personalize

        job = PersonalizeJob(model=model, image=photo, steps=settings.steps, rank=settings.rank, seed=settings.seed,
                             no_hyper=settings.use_hypernet is False, face_index=settings.face_index,
                             crop=settings.crop, out=work,
                             export=list(EXPORTS), preview_steps=settings.preview_steps,
                             model_config=self.config.model_config, device=self.config.device,
                             dtype=self.config.dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = personalize(job, progress=False)
        notes = run_notes(caught, work, work.parent / name)
        used = "hypernetwork" in result.stages  # personalize names the stage after what the adapter started from
        if settings.use_hypernet and not used and not ships_a_hypernet(model):  # asked for one (a ticked box)
            notes.append(no_hypernet_note(model, settings.steps))
        shutil.copyfile(photo, work / f"photo{photo.suffix.lower()}")
        gallery = []
        (work / "gallery").mkdir()
        for index, (caption, image) in enumerate(result.gallery):
            file = f"gallery/{index:02d}.png"
            image.save(work / file)
            gallery.append({"file": file, "caption": caption})
        write_record(work, name, {**asdict(settings), "use_hypernet": used, "photo": photo.name}, result.stages,
                     gallery, notes)

    def subject(self, run: str) -> Subject:
        """A finished run as Draw draws it: its adapter on the model it was made with."""
        record = read_run(self.config.out, run)
        return Subject(record.adapter, record.settings["model"], record.name)

    def draw(self, subject: Subject | str, prompt: str, scale: float = 1.0, seed: int = 0, steps: int = 30,
             count: int = 2, how: str = "1", listener: Listener | None = None, owner: str = "") -> Drawn:
        """More pictures of a subject (a run's name, or an uploaded adapter): ``prompt`` with [V], the adapter
        at ``scale``, drawn as ``how`` says (the short form of `personalize --preview-draw`)."""
        settings = DrawSettings(prompt, scale, seed, steps, count, how)
        # Before waiting for the slot or a model. A run's record is read again though the page's check event read it
        # a moment before: that reading is not reused, as read_run checks the run's files (each picture and download
        # in its folder, linked nowhere out) besides its run.json, which a run.json mtime+size key would not cover,
        # and all of it takes about a millisecond beside a draw's seconds.
        subject = self.checked_draw(subject, settings)
        with self.job("drawing", owner), runs.listen(self._heard(listener)):
            return self._drawer.draw(subject, settings)

    def checked_draw(self, subject: Subject | str, settings: DrawSettings) -> Subject:
        """The subject of a drawing asked for (a run's name: that run, read) and its settings, each refused in one
        line naming its control: before any job starts or model loads. The page checks a Draw click with this before
        it runs one, so that such a refusal leaves the page as it is, as a Busy refusal does."""
        subject = self.subject(subject) if isinstance(subject, str) else subject
        with command_line():  # in the words a job's checks speak (How to draw's, as generate's flags)
            settings.check()
        return subject

    def evaluate(self, images: list[str | Path], reference: str | Path, prompt: str, token: str = "sks",
                 metrics: str = "", listener: Listener | None = None, owner: str = "") -> str:
        """``lowdim eval`` on dropped pictures against a reference photo: its report as markdown, which names each
        picture by its own file name. ``metrics`` naming none (empty, or only commas): the page's own for the model
        served (``metrics_for``), which its Metrics box starts with."""
        from lowdim_sd.eval.job import EvalJob

        if not images:
            raise LowdimError("drop at least one generated picture to score")
        for value, label in ((prompt, "Their prompt"), (metrics, "Metrics")):
            if not isinstance(value, str):  # the prompt would reach eval as the prompts file's fault, a file of ours
                raise LowdimError(f"{label} must be text, got {value!r}")
        reference = check_photo(reference)
        photos = [check_photo(path, whole=False) for path in images]  # a cut one is left out with its reason
        names = metric_names(metrics, self.config.model)  # none named: those the box started with
        hear = self._heard(listener)

        def progress(total: int) -> Callable[[int], None]:  # run_eval's bar, as the listener hears bars
            done = [0]
            hear(SCORING_BAR, 0, 1)

            def advance(scores: int) -> None:
                done[0] += scores
                hear(SCORING_BAR, done[0], total)
            return advance

        with self.job("scoring", owner), tempfile.TemporaryDirectory(prefix="lowdim-eval-") as folder:
            job = EvalJob(Path(folder), names, (reference,), token, device=self.config.device)
            return scored(job, photos, prompt, progress)


def _on_the_console(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def checked_request(photo: str | Path, settings: RunSettings) -> tuple[Path, str]:
    """The photo and model of a personalization asked for, each value checked in one line naming its control:
    before any job starts or model loads. The page checks a click with this before it runs one, so that such a
    refusal leaves the run shown, as a Busy refusal does."""
    photo = check_photo(photo)
    model = check_model(settings.model)
    settings.check()
    check_face_choice(photo, model, settings.face_index, settings.crop)  # before the model loads
    return photo, model
