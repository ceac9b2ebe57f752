"""The page's Draw section: a prompt, how to draw the adapter, its own seed, steps and count, and an adapter
file to draw instead of a run's (``drawing`` does the work, ``draw_handlers`` answers the controls; this lays it
out and wires it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from lowdim_sd.draw_parts import draw_text, every_style_parts, suggested_parts
from lowdim_sd.ui.checks import DENOISING_STEPS, PICTURES
from lowdim_sd.ui.draw_handlers import EARLIER as EARLIER  # re-exported, as the names below: where callers found them
from lowdim_sd.ui.draw_handlers import NOTHING_TO_DRAW, Drawable, DrawHandlers, Marked, Pictures, from_the_earlier_draw
from lowdim_sd.ui.draw_handlers import asked_draw as asked_draw  # re-exported
from lowdim_sd.ui.draw_handlers import drawing_line as drawing_line  # re-exported
from lowdim_sd.ui.draw_handlers import failed_draw as failed_draw  # re-exported
from lowdim_sd.ui.draw_handlers import refused_file as refused_file  # re-exported
from lowdim_sd.ui.draw_handlers import without as without  # re-exported
from lowdim_sd.ui.drawing import DRAW_AFTER
from lowdim_sd.ui.page_parts import STOPPED, BySession, File, Number, Slider, job_on_page, on_page
from lowdim_sd.ui.studio import Studio

# (label, short form): the whole adapter, and its parts apart as docs/results.md measured them on TinyFaces;
# the third is what `personalize` suggests for its files (the page runs no --keep-styles), the fourth trades some
# of the face for the last styles (session 24).
DRAW_CHOICES = [("whole", "1"), ("parts apart: text encoder's part off, UNet part from 30%", "te=0@start=0.3"),
                ("parts apart, most of the styles: UNet part from 30% to 80%",
                 draw_text(1.0, suggested_parts(keep_styles=0.0))),
                ("parts apart, every style: and its cross-attention at 0.25, for some of the face",
                 draw_text(1.0, every_style_parts(keep_styles=0.0)))]
# The parts apart, said as a person reads them; the short form (draw_parts.draw_text) last, for whoever types one.
HOW_TO_DRAW_HELP = ("its parts apart keep more of the model's styles: the text encoder's part weaker, the UNet "
                    "part only from or until a fraction of the steps, its cross-attention weaker; or type your own, "
                    "the same as lowdim personalize --preview-draw's te=T@start=F@end=E@ca=C")
# Every click reaches the studio, which refuses a second job itself with a message (Gradio would otherwise drop a
# click while its event runs, or queue it out of sight); the Personalize tab's events take the same options.
UNLIMITED: dict[str, Any] = {"concurrency_limit": None, "trigger_mode": "multiple"}


def after_draw(ended: Drawable | str, pictures: Pictures, drawn_with: Drawable, what: Drawable,
               marked: Marked) -> tuple:
    """More pictures, what they were drawn from and whether they are marked (``pictures_beside``), once a Draw's
    job ended (``ended``: what it drew, or how it ended; ``what``: what Draw draws now). Its own pictures go where
    another run was opened, or a file dropped or cleared, while it drew (neither is a job), as those drawn before
    would have gone.

    A stopped Draw keeps the pictures it would have replaced, marked as a failed Draw marks them: its line ("...
    nothing of it was kept") is on Draw's own line and in a toast that fades, while the pictures sit under it,
    where their captions, unmarked, name a prompt and seed that may well be the
    stopped Draw's own (a Draw asked again with more steps: no caption names them). A refused Draw started
    nothing: the page stays as it was, as after a bad value."""
    if ended == STOPPED:
        kept, now_marked = from_the_earlier_draw(pictures, marked)
        return kept, drawn_with, now_marked
    if isinstance(ended, dict):  # its own pictures, which the job put in place: unmarked
        kept, drawn_from, _ = pictures_beside(what, ended)
        return kept, drawn_from, False
    return gr.update(), drawn_with, marked  # REFUSED


def drawn_source(what: Drawable) -> tuple[str, str] | None:
    """What Draw draws from ``what``: the dropped file while the file box holds one, else the run shown."""
    if not what:
        return None
    return ("adapter", what["adapter"]) if "adapter" in what else ("run", what["run"])


def pictures_beside(what: Drawable, drawn_with: Drawable) -> tuple:
    """More pictures, what they were drawn from and whether they are marked (``from_the_earlier_draw``), once Draw
    may draw something else (a Personalize or Open done, or failed and its run cleared; a file dropped or
    cleared; ``what``: what Draw draws now). ``drawn_with`` is what Draw drew them from. Their captions name the
    prompt, not what drew them, so beside another source they would be taken for its: they go. The same source
    kept (the same run shown again; a failure that clears the run beside a dropped file Draw still draws) keeps
    them, as does a refused or stopped job, which shows no other run."""
    if drawn_with is None:  # nothing drawn, or cleared already
        return gr.update(), None, gr.update()
    if drawn_source(drawn_with) == drawn_source(what):
        return gr.update(), what, gr.update()
    return [], None, False


@dataclass(frozen=True)
class MorePictures:
    """The More pictures gallery, with what its pictures were drawn from (``pictures_beside``) and whether their
    captions carry the earlier draw's mark (``from_the_earlier_draw``)."""

    gallery: gr.Gallery
    drawn_with: gr.State
    marked: gr.State
    said: gr.HTML  # Draw's own line: why the last Draw drew nothing

    def follow_the_run(self, then: Callable, current: gr.State, empties_said: bool = True) -> None:
        """After ``then`` (an event's ``.success`` or ``.then``, where another run may be shown or a file dropped
        or cleared), More pictures only where they are still of what Draw draws (``pictures_beside``), and Draw's
        line emptied: why an earlier Draw drew nothing ("open a run first") is stale once a run is shown (not
        after ``then``'s event wrote a line there itself: ``empties_said`` False)."""
        then(on_page(pictures_beside), [current, self.drawn_with], [self.gallery, self.drawn_with, self.marked],
             show_progress="hidden", api_visibility="private")
        if empties_said:
            then(lambda: "", None, [self.said], show_progress="hidden", api_visibility="private")


def _draw_controls() -> tuple:
    """The prompt, the adapter's scale, how to draw its parts; the pictures' seed, steps and count."""
    with gr.Row():
        prompt = gr.Textbox(f"a photo of a [V] face{DRAW_AFTER}", label="Prompt ([V] is the subject)", scale=3,
                            info="a run's own phrase and looks fill it in when the run finishes or opens",
                            elem_id="draw-prompt")
        scale = Slider(0.0, 1.5, value=1.0, step=0.05, label="Adapter scale", scale=2, elem_id="draw-scale")
        how = gr.Dropdown(DRAW_CHOICES, value="1", allow_custom_value=True, label="How to draw", scale=2,
                          info=HOW_TO_DRAW_HELP)
    with gr.Row():
        seed = Number(0, precision=0, label="Picture seed", elem_id="draw-seed",
                      info="the first picture's; each next picture takes the next number")
        steps = Slider(*DENOISING_STEPS, value=30, step=1, label="Draw's denoising steps", elem_id="draw-steps")
        count = Slider(*PICTURES, value=2, step=1, label="Pictures", elem_id="draw-count")
        # No file_types: Gradio's refusal prints a traceback on the terminal; drawing's own check names the file.
        adapter = File("Adapter file", label="Or draw an adapter file (.safetensors)", type="filepath",
                       elem_id="adapter-file")
    return prompt, scale, how, seed, steps, count, adapter


def draw_section(studio: Studio, current: gr.State,
                 model: gr.Dropdown) -> tuple[gr.Textbox, gr.Markdown, gr.File, MorePictures]:
    """Lay out Draw under the gallery; returns its prompt and its line on what it draws, which a run's
    finishing or opening fills, its adapter file box, which a run shown clears (``page.shown``), and its pictures,
    which another source of Draw's clears. A Draw refused, stopped or failed says so on a line of its own beside
    Draw, which stays once the toast fades (review EA 3): in Personalize's stages box it replaced the stage table of
    the run still shown above, and read as if about that run (review CR 2)."""
    prompt, scale, how, seed, steps, count, adapter = _draw_controls()
    with gr.Row():
        drawing = gr.Markdown(NOTHING_TO_DRAW, elem_classes=["lowdim-note"], elem_id="drawing")
        draw = gr.Button("Draw", elem_id="draw")
    # Why a Draw drew nothing (refused, stopped, failed), which stays once the toast fades until the next Draw
    # starts (HTML: job_on_page escapes the line). A failure's line is kept for the follow-up that writes it:
    # Gradio gives a follow-up no error.
    said, handlers = gr.HTML(elem_id="draw-said"), DrawHandlers(studio, BySession[str]())
    # filepath: a failed Draw's follow-up gets the pictures shown as (file, caption), to caption them again. Output
    # only: as an input of those follow-ups Gradio would make it an upload box, whose files stayed as "drawn".
    drawn = gr.Gallery(label="More pictures", columns=4, height=280, elem_id="drawn", type="filepath",
                       interactive=False)
    more = MorePictures(drawn, gr.State(None), gr.State(False), said)  # nothing drawn yet
    _wire_file_box(adapter, model, current, prompt, drawing, more, handlers)
    _wire_draw(draw, [current, model, prompt, scale, how, seed, steps, count], drawing, more, handlers)
    return prompt, drawing, adapter, more


def _wire_file_box(adapter: gr.File, model: gr.Dropdown, current: gr.State, prompt: gr.Textbox,
                   drawing: gr.Markdown, more: MorePictures, handlers: DrawHandlers) -> None:
    """A file dropped or cleared changes what Draw draws (``current``), its prompt and its line (``drawing``): the
    pictures drawn from what it drew before go."""
    # A refused file's badge goes on Draw's line, which the follow-up that empties the box rewrites (the error stays
    # its toast, and is on `said` too), not over the prompt, which the refusal leaves as it was.
    use_adapter = handlers.lines.keeping(handlers.use_adapter)  # a refused file's line, for file_refused
    dropped = adapter.change(use_adapter, [adapter, model, current], [current, prompt, drawing],
                             show_progress_on=[drawing], **UNLIMITED)
    emptied = dropped.failure(handlers.file_refused, [current], [adapter, current, drawing, more.said],
                              show_progress_on=[drawing], api_visibility="private")
    more.follow_the_run(dropped.success, current)
    more.follow_the_run(emptied.then, current, empties_said=False)  # its line, which emptied wrote there


def _wire_draw(draw: gr.Button, asked: list[gr.components.Component], drawing: gr.Markdown, more: MorePictures,
               handlers: DrawHandlers) -> None:
    """Draw's click: its values (``asked``: what Draw draws, the Model box, then Draw's controls) checked, then the
    job, and the follow-ups that put its pictures, or why it drew none, beside Draw."""
    ended = gr.State(None)  # how the last Draw's job ended, for after_draw: what it drew, REFUSED or STOPPED
    current, said, outputs = asked[0], more.said, [more.gallery, more.said, ended]
    # A click's values are checked first, in an event with no outputs, as Personalize's are: a bad value is its one
    # line, with no "Error" badge over Draw's line, and its own line even while another tab's run holds the slot;
    # its follow-up writes that line in `said`, where it stays once the toast fades.
    checked = draw.click(handlers.lines.keeping(handlers.check_draw), asked, None, api_visibility="private",
                         **UNLIMITED)
    checked.failure(handlers.refused_line, None, [said], show_progress="hidden", api_visibility="private")
    # A Draw that runs empties `said` as it starts, as Personalize empties its job line: an earlier Draw's line would
    # say why the one now drawing drew nothing.
    cleared = checked.success(lambda: "", None, [said], show_progress="hidden", api_visibility="private",
                              **UNLIMITED)
    # Its bar on its own line beside Draw, not over the run's stage table (nor is a refusal's line, in `said`)
    draw_more = handlers.lines.keeping(job_on_page(outputs, said, ended)(handlers.draw_more))
    ran = cleared.success(draw_more, asked, outputs, show_progress_on=[drawing], **UNLIMITED)
    # A draw that started and failed: its badge, on Draw's line where its bar was, gives way to this follow-up's, as
    # a failed Personalize's gives way to the follow-up that clears its run (page.py); its error is the toast, and
    # "the draw failed: ..." in `said`, which stays.
    ran.failure(handlers.failed, [more.gallery, more.marked], [more.gallery, more.marked, said],
                show_progress_on=[drawing], api_visibility="private")
    ran.success(on_page(after_draw), [ended, more.gallery, more.drawn_with, current, more.marked],
                [more.gallery, more.drawn_with, more.marked], show_progress="hidden", api_visibility="private")
