"""What the Personalize tab's buttons and its timer do with one studio (``PersonalizeHandlers``), and the outputs
each way of showing a run fills (``shown``, ``done_beside``, ``forget_run``): functions of the controls' values,
which ``page.py`` only wires."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr

from lowdim.errors import LowdimError
from lowdim_sd.ui.checks import check_checkbox, check_face, is_empty
from lowdim_sd.ui.drawing import default_prompt
from lowdim_sd.ui.page_draw import Drawable, drawing_line, without
from lowdim_sd.ui.page_parts import (
    OWN_JOB_RUNNING,
    BySession,
    OpensMeanwhile,
    error_line,
    html_text,
    on_page,
    page_line,
    progress_listener,
    session,
    whole,
)
from lowdim_sd.ui.run_folders import RunRecord, chosen_run, list_runs
from lowdim_sd.ui.studio import ANOTHER_TABS_JOB, Busy, RunSettings, Stopped, Studio, checked_request

HYPER_LABEL = "Start from the hypernetwork's prediction"


# A line naming another tab's job (studio.ANOTHER_TABS_JOB) goes stale once the studio is free (review CZ5).
OTHER_TAB_ENDED = "the other tab's run has ended: Personalize now runs"
REFRESH_SECONDS = 3  # the page's timer: how soon another tab's finished run is listed


def run_folder_names(out: Path) -> list[str]:
    """What the timer compares between ticks: the names in ``out``, a directory listing only (reading each run's
    record is ``list_runs``' work, done when this changed). A run is published by renaming its hidden folder."""
    try:
        return sorted(name for name in os.listdir(out) if not name.startswith("."))
    except OSError:  # the folder gone: no runs, as list_runs says
        return []


def stage_table(record: RunRecord) -> str:
    """The run's notes and stage times, as the stages box's HTML: the words its run.json gave (which someone else
    may have written) escaped, so they show as written (markdown would make a bare URL a link, and ``&amp;`` ``&``)."""
    right = ' style="text-align: right"'  # the seconds, as a table of numbers is read
    rows = "".join(f"<tr><td>{html_text(name)}</td><td{right}>{seconds:.1f}</td></tr>"
                   for name, seconds in record.stages.items())
    notes = "".join(f"<p><strong>Note:</strong> {html_text(page_line(note))}</p>" for note in record.notes)  # CLI's
    return (f"<p><strong>Run <code>{html_text(record.name)}</code></strong> done in {record.total_seconds:.1f} s; "
            f"its files are in <code>{html_text(str(record.folder.resolve()))}</code></p>{notes}"
            f"<table><thead><tr><th>stage</th><th{right}>seconds</th></tr></thead><tbody>{rows}</tbody></table>")


def shown(record: RunRecord) -> tuple:
    """The outputs every way of showing a run fills: gallery, downloads, stage times, runs list, what Draw
    draws, Draw's prompt with the looks the run read from its photo, Draw's line, and its adapter file box
    emptied: the run shown is what Draw draws now, and a file left in the box would say otherwise (while the box
    holds a file, Draw draws that file); and the job line emptied: an earlier refusal or stop is not this run's."""
    gallery = [(str(path), caption) for path, caption in record.gallery]
    files = [str(path) for path in record.downloads.values()]
    runs = list_runs(record.folder.parent)
    prompt: str | dict[str, Any]  # the phrase, or Gradio's "leave the prompt as it is"
    try:
        prompt = default_prompt(record.adapter)
    except LowdimError:  # an adapter damaged since: the run still shows; Draw names the problem when pressed
        prompt = gr.update()
    return (gallery, files, stage_table(record), gr.update(choices=runs, value=record.name),
            {"run": record.name}, prompt, drawing_line({"run": record.name}), None, "")


def done_beside(record: RunRecord) -> tuple:
    """``shown``'s outputs for a run that finished while the user opened another: the opened run stays on screen
    whole, Earlier runs lists the finished one, and the job line says it is done and where to open it."""
    runs = gr.update(choices=list_runs(record.folder.parent))
    line = html_text(f"run {record.name} is done: pick it in Earlier runs and press Open to see it")
    return gr.update(), gr.update(), gr.update(), runs, gr.update(), gr.update(), gr.update(), gr.update(), line


def forget_run(what: Drawable) -> tuple:
    """``shown``'s outputs after a failed Personalize run or Open: no run shown (gallery, downloads, stages), so
    none sits under the error as if it were the failed one's, and none for Draw, whose dropped file stays
    (in its box); Earlier runs (the name typed or picked) and Draw's prompt as they are. A refused or stopped job
    is no failure (``job_on_page``), nor a click whose values are refused before it runs (``check_request``):
    they leave the run shown. The job line is emptied: the follow-ups that call this write the failure's line
    there (``failed``, ``open_failed``)."""
    left = without(what, "run")
    return [], None, "", gr.update(), left, gr.update(), drawing_line(left), gr.update(), ""


@contextmanager
def kept_on_failure(lines: BySession[str], request: gr.Request | None) -> Iterator[None]:
    """The line of what fails in the block (``error_line``, as ``on_page`` shows it) kept for the session's
    follow-up, which writes it where it stays once the toast fades."""
    try:
        yield
    except Exception as error:
        lines.keep(session(request), error_line(error))
        raise


class PersonalizeHandlers:
    """What the tab's Personalize, Stop and Open do with one studio, as functions of the controls' values: the
    tab only wires them. Their names are the page's API names (/personalize, /open_run)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.opens = OpensMeanwhile()  # a run its session opened while its Personalize ran stays on screen
        self.failures: BySession[tuple[str, bool]] = BySession()  # its failed job's line, whether it opened a run
        self.refusals: BySession[str] = BySession()  # a click's values refused before its job: the line
        self.failed_opens: BySession[str] = BySession()  # an Open that failed: the line

    def personalize(self, path: str | None, chosen_model: str, hyper: bool, step_count: float | None,
                    lora_rank: float, run_seed: float | None, sample_steps: float, index: object,
                    request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple:
        # No docstring: Gradio would show it as /personalize's API description. The tab wraps this in
        # job_on_page, which needs the tab's outputs. A client calling /personalize is checked here too.
        path, settings = asked_run(path, chosen_model, hyper, step_count, lora_rank, run_seed, sample_steps, index)
        owner = session(request)
        with self.opens.watch(owner) as opened:
            try:
                record = self.studio.personalize(path, settings, progress_listener(progress), owner=owner)
            except (Busy, Stopped):  # no failure: job_on_page's line
                raise
            except Exception as error:  # its line, for the follow-up (failed), which keeps a run opened meanwhile
                self.failures.keep(owner, (error_line(error), opened.is_set()))
                raise
        return done_beside(record) if opened.is_set() else shown(record)

    @on_page
    def check_request(self, path: str | None, chosen_model: str, hyper: bool, step_count: float | None,
                      lora_rank: float, run_seed: float | None, sample_steps: float, index: object,
                      request: gr.Request | None = None) -> None:
        """What Personalize refuses before a job starts, checked before the page runs it (``personalize_tab``); a
        refusal's line is kept for ``refused``."""
        with kept_on_failure(self.refusals, request):
            checked_request(*asked_run(path, chosen_model, hyper, step_count, lora_rank, run_seed, sample_steps,
                                       index))

    def refused(self, request: gr.Request | None = None) -> str | dict:
        """The follow-up of a click ``check_request`` refused: its line on the job line, where it stays once the
        toast fades, in place of an earlier stop or refusal there, which would read as this click's answer (review
        EK 1); none kept (a second click's follow-up, after the first one's took the line): the line as it is."""
        line = self.refusals.take(request)
        return html_text(line) if line else gr.update()

    @on_page
    def starting(self, request: gr.Request | None = None) -> tuple:
        """A Personalize's values passed its checks: the job line emptied, Earlier runs listing the runs finished
        since the page loaded (another tab's), its value left as it is, and the refusal ``own_job_free`` gives when
        this session's own job runs, its line on the job line above that job's bar ("" when none). Another tab's
        job refuses it from the job itself, as the slot may free in between."""
        refusal = OWN_JOB_RUNNING if self.opens.running(session(request)) else ""
        return html_text(refusal), gr.update(choices=list_runs(self.studio.config.out)), refusal

    @on_page
    def own_job_free(self, refusal: str) -> None:
        """``starting``'s refusal as a toast too, ending the click's events before the job's, whose bar is drawn
        where the running job's is: Gradio would restart its clock."""
        if refusal:
            raise LowdimError(refusal)

    @on_page
    def failed(self, what: Drawable, request: gr.Request | None = None) -> tuple:
        """The follow-up of a Personalize that failed: its error on the job line, which stays once the toast fades,
        and the run shown cleared (``forget_run``), unless the user opened it while the job ran (review CZ1)."""
        line, opened = self.failures.take(request) or ("", False)
        kept = (gr.update(),) * 8 if opened else forget_run(what)[:-1]
        return (*kept, html_text(f"the personalization failed: {line}") if line else "")

    @on_page
    def stop_mine(self, request: gr.Request | None = None) -> str:
        """Only the job this session started: another tab's is theirs to stop (docs/cli.md: no override but the
        server's Ctrl-C)."""
        return html_text(self.studio.stop(owner=session(request)))  # the job line is HTML

    @on_page
    def refresh(self, listed: list[str] | None, line: str | None, before_reload: str | None = None) -> tuple:
        """The page's timer: Earlier runs' choices when the folder's runs changed since ``listed`` (its value, and
        the text typed in it, left as they are), another tab's refusal or Stop line (``ANOTHER_TABS_JOB``) replaced
        once the studio is free, and the listing for the next tick; a tick that finds nothing changed updates
        nothing (``gr.skip()``). Never this tab's own job's line: that stays until this tab acts, but for the
        job this tab ran before it was reloaded (the session ``before_reload``), stopped since: its line then."""
        names = run_folder_names(self.studio.config.out)
        runs = gr.update(choices=list_runs(self.studio.config.out)) if names != listed else gr.skip()
        stopped = self.studio.closed_tab_line(before_reload)
        stale = ANOTHER_TABS_JOB in (line or "") and not self.studio.busy()
        now = html_text(stopped) if stopped else OTHER_TAB_ENDED if stale else gr.skip()
        return runs, now, names if names != listed else gr.skip()

    @on_page
    def reloaded(self, before: str | None, request: gr.Request | None = None) -> tuple:
        """A page load: the session this tab had before a reload (``before``, which the browser kept for the tab:
        page.KEEP_SESSION, and gives only to a reload, not to a duplicated tab: page.SESSION_BEFORE), whose job the
        reload stopped, for the timer (``refresh``) until the job has stopped; its line now if it has. And this
        session, for the browser to keep for the next reload."""
        before = before if isinstance(before, str) else ""
        stopped = self.studio.closed_tab_line(before)
        return html_text(stopped) if stopped else gr.skip(), session(request), before

    @on_page
    def open_run(self, name: object, request: gr.Request | None = None) -> tuple:
        with kept_on_failure(self.failed_opens, request):  # for open_failed
            record = chosen_run(self.studio.config.out, name)
            self.opens.opened(session(request))  # only a run shown: a failed Open clears the page as before
            return shown(record)

    @on_page
    def open_failed(self, what: Drawable, request: gr.Request | None = None) -> tuple:
        """The follow-up of an Open that failed: no run shown (``forget_run``), and why on the job line, which
        stays once the toast fades (an emptied page with no reason beside it: review EK 1)."""
        line = self.failed_opens.take(request)
        return (*forget_run(what)[:-1], html_text(f"nothing was opened: {line}") if line else "")


def asked_run(path: str | None, chosen_model: str, hyper: bool, step_count: float | None, lora_rank: float,
              run_seed: float | None, sample_steps: float, index: object) -> tuple[str, RunSettings]:
    """The photo and settings Personalize's controls ask for, each refused in one line naming its control."""
    if not path:
        raise LowdimError("drop a face photo first")
    return path, RunSettings(model=chosen_model, use_hypernet=check_checkbox(hyper, HYPER_LABEL),
                             steps=None if is_empty(step_count) else whole(step_count, "Finetune steps"),
                             rank=whole(lora_rank, "Rank"), seed=whole(run_seed, "Run seed"),
                             face_index=check_face(index) or None,
                             preview_steps=whole(sample_steps, "Gallery denoising steps"))
