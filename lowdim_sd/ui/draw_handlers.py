"""What the Draw section's file box and Draw button do with one studio (``DrawHandlers``), and what they read and
write: what Draw draws (``Drawable``) and its line on it, the values its controls ask for, and More pictures kept
after a Draw that drew none of its own. Functions of the controls' values, which ``page_draw.py`` lays out and
wires."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import gradio as gr

from lowdim.errors import LowdimError
from lowdim_sd.ui.checks import real_number
from lowdim_sd.ui.drawing import DrawSettings, Subject, checked_upload, default_prompt, uploaded_adapter
from lowdim_sd.ui.page_parts import (
    BySession,
    code_span,
    html_text,
    on_page,
    progress_listener,
    session,
    text,
    whole,
)
from lowdim_sd.ui.studio import Studio

NOTHING_TO_DRAW = "Draw draws the run personalized or opened here, or an adapter file dropped beside it"
Drawable = dict[str, str] | None  # the state of what Draw draws: {"run": NAME}, {"adapter": PATH}, or both
EARLIER = "earlier draw: "  # a More pictures caption's start once a later Draw failed or was stopped
# Whether More pictures' captions carry EARLIER already: the page's own record, as a prompt may start with those words
Marked = bool
Pictures = list[tuple[str, str | None]] | None  # More pictures as a handler gets it (file, caption); None: empty


def from_the_earlier_draw(pictures: Pictures, marked: Marked) -> tuple[list[tuple[str, str]], Marked]:
    """More pictures after a Draw that started and failed (or was stopped: ``after_draw``): the pictures it would
    have replaced, each caption marked as the earlier draw's (once, however many draws fail after it: ``marked``
    says whether they carry the mark already, which their text cannot, a prompt being the user's own words), and
    that they are marked now.

    Kept, not cleared as a failed Personalize clears the run it showed: these are good pictures of a draw that
    finished, perhaps minutes of drawing on a CPU, which the user may still want to look at or save, and unlike a
    run they are nowhere else to reopen. Unmarked, they would sit beside the failed draw's error as if it had drawn
    them from the prompt now in the box; the mark says whose they are while the error's toast says what failed."""
    shown = [(picture, caption or "") for picture, caption in pictures or []]
    if marked is True:
        return shown, True
    return [(picture, EARLIER + caption) for picture, caption in shown], True


def failed_draw(pictures: Pictures, marked: Marked, line: str | None) -> tuple:
    """More pictures and their mark after a Draw that started and failed (``from_the_earlier_draw``), and Draw's
    line saying it failed and why (``line``, kept by its session: ``BySession``), which stays once the error's toast
    fades; an earlier Draw's refusal there ("another tab's run is running") is not why this one failed."""
    return *from_the_earlier_draw(pictures, marked), html_text(f"the draw failed: {line}") if line else ""


def drawing_line(what: Drawable) -> str:
    """Draw's line on what it draws: a dropped file over the run it was dropped beside, which its clearing
    brings back."""
    if what and "adapter" in what:
        return f"Draw draws the adapter {code_span(Path(what['adapter']).name)} on the model in the Model box"
    if what and "run" in what:
        return f"Draw draws run {code_span(what['run'])}"
    return NOTHING_TO_DRAW


def without(what: Drawable, key: str) -> Drawable:
    """What Draw draws once the run or the dropped file (``key``) is gone: the other, or nothing."""
    left = {name: value for name, value in (what or {}).items() if name != key}
    return left or None


def refused_file(what: Drawable) -> tuple:
    """The file box, what Draw draws and its line once the file dropped in the box was refused (``use_adapter``):
    the box emptied and Draw drawing the run shown, as its x would leave them, the file dropped before it gone too.
    Left holding the refused file, the box would name a file Draw does not draw; given back the earlier file, its
    change would check it again and put the file's own prompt over the one the user may have written since."""
    left = without(what, "adapter")
    return None, left, drawing_line(left)


class DrawHandlers:
    """What Draw's file box and button do with one studio, as functions of the controls' values: the section only
    wires them (``page_draw._wire_draw``), each failure's line kept in ``lines`` for the follow-up that writes it on
    Draw's own line, which stays once the toast fades. Their names are the page's API names (/use_adapter,
    /draw_more)."""

    def __init__(self, studio: Studio, lines: BySession[str]) -> None:
        self.studio = studio
        self.lines = lines  # a failed event's line, by session: the wiring wraps the handlers in lines.keeping

    @on_page
    def use_adapter(self, path: str | None, chosen_model: str, what: Drawable = None,
                    request: gr.Request | None = None) -> tuple:
        """The file is checked now; the Model box when Draw is pressed, as it is then (it may be filled in after).
        The run shown stays beside the file in ``what``: clearing the file draws that run again."""
        if not path:
            left = without(what, "adapter")
            return left, gr.update(), drawing_line(left)
        dropped = {**(what or {}), "adapter": str(checked_upload(path))}
        return dropped, default_prompt(Path(dropped["adapter"])), drawing_line(dropped)

    def draw_more(self, what: Drawable, chosen_model: str, prompt_text: str | None, adapter_scale: float,
                  how_to_draw: str | None, first_seed: float | None, sample_steps: float, pictures: float,
                  request: gr.Request | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
        # No docstring: Gradio would show it as /draw_more's API description. The section wraps this in
        # job_on_page, which needs its outputs. A client calling /draw_more, which runs without check_draw, is
        # checked here too (studio.draw checks what asked_draw leaves).
        subject, settings = asked_draw(what, chosen_model, prompt_text, adapter_scale, how_to_draw, first_seed,
                                       sample_steps, pictures)
        made = self.studio.draw(subject, **asdict(settings), listener=progress_listener(progress),
                                owner=session(request))  # its tab's closing stops it
        return made, "", what  # an earlier Draw's refusal or stop line goes: this one drew

    @on_page
    def check_draw(self, what: Drawable, chosen_model: str, prompt_text: str | None, adapter_scale: float,
                   how_to_draw: str | None, first_seed: float | None, sample_steps: float, pictures: float,
                   request: gr.Request | None = None) -> None:
        """What Draw refuses before a job starts, checked before the page runs it."""
        self.studio.checked_draw(*asked_draw(what, chosen_model, prompt_text, adapter_scale, how_to_draw,
                                             first_seed, sample_steps, pictures))

    def refused_line(self, request: gr.Request | None = None) -> str | dict:
        """A refused Draw's line, kept by ``check_draw``; none kept (a second click's follow-up, after the first
        one's took the line and wrote it): the line as it is."""
        line = self.lines.take(request)
        return html_text(line) if line else gr.update()

    @on_page
    def failed(self, pictures: Pictures, marked: Marked, request: gr.Request | None = None) -> tuple:
        """The follow-up of a Draw that started and failed: ``failed_draw`` with the line its job kept."""
        return failed_draw(pictures, marked, self.lines.take(request))

    def file_refused(self, what: Drawable, request: gr.Request | None = None) -> tuple:
        """``refused_file``'s outputs, and why on Draw's line, which stays once the toast fades (review EK 3): the
        file dropped is gone from its box, and the page would say nothing of it."""
        line = self.lines.take(request)
        return *refused_file(what), html_text(line) if line else ""


def asked_draw(what: Drawable, chosen_model: str, prompt_text: str | None, adapter_scale: float,
               how_to_draw: str | None, first_seed: float | None, sample_steps: float,
               pictures: float) -> tuple[Subject | str, DrawSettings]:
    """What Draw's controls ask to draw (a run's name, or a dropped file on the Model box's model) and how, each
    value that is no number of its kind refused in one line naming its control (``Studio.checked_draw`` checks the
    rest)."""
    if not what:
        raise LowdimError("personalize or open a run, or drop an adapter file, first: Draw needs an adapter")
    # A run is drawn on the model it was made with: the Model box is read (and checked) for a dropped file only.
    subject = uploaded_adapter(what["adapter"], chosen_model) if "adapter" in what else what["run"]
    return subject, DrawSettings(text(prompt_text), real_number(adapter_scale, "Adapter scale"),
                                 whole(first_seed, "Picture seed"), whole(sample_steps, "Draw's denoising steps"),
                                 whole(pictures, "Pictures"), str(text(how_to_draw)))
