"""The Gradio page of ``lowdim ui``: layout and wiring only; every action is a ``Studio`` call.

A user mistake (not an image, no face, an unknown model, a number out of range) becomes one line on the page
(``gr.Error``), and the server keeps serving; anything else is also printed to the terminal. A button's (or Draw's
file box's) stays on a line of its tab once the toast fades: the job line, Draw's line, Evaluate's table. A job
refused (the studio is busy) or stopped is no mistake: its line goes in the job line under Personalize and Stop
(``job_on_page``), above the running Personalize's bar (in a box of its own: the line stays readable), never in
the stages box, which holds only the run shown's stage times (or an Open's bar): a run opened while the job runs
keeps its own beside its gallery, and the run shown stays whole until a new run replaces it.
"""

from __future__ import annotations

from typing import NamedTuple

import gradio as gr
from gradio.events import Dependency

from lowdim.errors import LowdimError, first_line
from lowdim_sd import defaults
from lowdim_sd.ui.checks import (
    DENOISING_STEPS,
    MAX_FINETUNE_STEPS,
    RANKS,
    NotOffered,
    check_checkbox,
    check_face,
    check_model,
    installed_models,
)
from lowdim_sd.ui.page_draw import UNLIMITED, draw_section
from lowdim_sd.ui.page_evaluate import evaluate_tab
from lowdim_sd.ui.page_handlers import (
    HYPER_LABEL,
    REFRESH_SECONDS,
    PersonalizeHandlers,
    run_folder_names,
)
from lowdim_sd.ui.page_handlers import asked_run as asked_run  # re-exported: where callers have always found it
from lowdim_sd.ui.page_handlers import shown as shown  # re-exported, as asked_run
from lowdim_sd.ui.page_handlers import stage_table as stage_table  # re-exported, as asked_run
from lowdim_sd.ui.page_parts import File, Number, Slider, counted_inputs, job_on_page, on_page, page_line
from lowdim_sd.ui.photos import MAX_PIXELS, crop_preview
from lowdim_sd.ui.run_folders import list_runs
from lowdim_sd.ui.studio import Studio, StudioConfig
from lowdim_sd.ui.studio_notes import ships_a_hypernet

INTRO = ("# lowdim: you, in any style, from one photo\n"
         "Drop a face photo, check the crop, press **Personalize**, or open an earlier run under it; the run's "
         "pictures, downloads and **Draw** follow. The hypernetwork predicts a tiny adapter from the photo, then a "
         "rank-relaxed LoRA finetunes it for a few steps (HyperDreamBooth). `[V]` in a prompt is the subject.")
DOWNLOADS_NOTE = ("Each file is named after its run. `NAME.lowdim.safetensors`: lowdim's own (`lowdim generate -a`, "
                  "or *Draw* below). `NAME.diffusers.safetensors`: diffusers' `load_lora_weights` and peft. "
                  "`NAME.kohya.safetensors`: A1111, ComfyUI, Forge. `NAME.preview.png`: the gallery in one picture.")
# An empty HTML box gives a bar no height, and it would overlap the row below. The job's bar box has the bar's
# height from the start, so nothing under it moves as a run starts and ends (review CZ3); the stages box grows only
# for an Open's bar, as short as reading a folder.
CSS = (".lowdim-note {min-height: 1.5em}\n#job-bar {min-height: 5em}\n"
       "#stages:has(> [data-testid='status-tracker']:not(.hide)) {min-height: 5em}")
STEPS_HELP = (f"empty: the model's recipe ({defaults.FINETUNE_STEPS} after the prediction, {defaults.SCRATCH_STEPS} "
              f"for a model with no hypernetwork); up to {MAX_FINETUNE_STEPS}. The finetune's time grows with it; "
              f"Stop ends a run")
# Earlier runs' text as shown, for Open: Gradio's Dropdown that takes typed names commits no emptied text, so its
# value would still be the last name opened.
TYPED_RUN = "(name) => { const box = document.querySelector('#earlier input'); return [box ? box.value : name]; }"
# The tab's page session before a reload, which the browser keeps for the tab (sessionStorage: a reload keeps it, a
# new tab starts without): a reload ends that session, and the job it ran, so the new page says what became of it.
# Claimed on a real reload only: "Duplicate tab" copies sessionStorage too, and the copy, never reloaded, would
# otherwise take (once) the line of the original tab's job.
SESSION_BEFORE = ("() => { try { const nav = performance.getEntriesByType('navigation')[0]; "
                  "return [nav && nav.type === 'reload' ? sessionStorage.getItem('lowdim-ui-session') || '' : '']; } "
                  "catch (e) { return ['']; } }")
KEEP_SESSION = "(now) => { try { sessionStorage.setItem('lowdim-ui-session', now); } catch (e) {} return []; }"


def hyper_info(model: str, has_hypernet: bool) -> str:
    """The hypernetwork box's help: what clearing it does, or why a model without one has it cleared."""
    why = "off" if has_hypernet else f"{model} ships no hypernetwork"
    return f"{why}: the LoRA starts from zero, and Finetune steps becomes {defaults.SCRATCH_STEPS}, which that needs"


@on_page
def recipe_steps(use_hypernet: bool) -> int:
    """What Finetune steps becomes when the hypernetwork box is ticked or cleared: a LoRA from zero needs
    SCRATCH_STEPS (the box's own label says so); 40 from zero would be the paper's ablation."""
    return defaults.FINETUNE_STEPS if check_checkbox(use_hypernet, HYPER_LABEL) else defaults.SCRATCH_STEPS


def face_choices(count: int, chosen: int | None) -> dict:
    return gr.update(choices=list(range(max(count, 1))), value=chosen or 0, visible=count > 1)


def build_page(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="lowdim", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Tab("Personalize"):
            earlier, listed = personalize_tab(studio, installed_models(), page)
        with gr.Tab("Evaluate"):
            evaluate_tab(studio)
        # On every page load, not once at start: a tab opened later lists the runs made since (and the timer
        # compares the folder with what the page lists from then on).
        out = studio.config.out
        page.load(lambda: (gr.update(choices=list_runs(out)), run_folder_names(out)), outputs=[earlier, listed])

        def closed(request: gr.Request) -> None:  # a closed or reloaded tab stops the run it started
            studio.stop(owner=request.session_hash, wait=0, tab_closed=True)  # said on the console and the reload

        page.unload(closed)
    counted_inputs(page)
    return page


def _photo_column() -> tuple:
    """The photo, the crop the model will learn from, a note on it, and which face when there are several."""
    photo = File("Face photo", label=f"Face photo (JPEG, PNG, WebP; up to {MAX_PIXELS // 1_000_000} MP)",
                 type="filepath", elem_id="photo")
    crop = gr.Image(label="What the model learns", interactive=False, height=256, elem_id="crop")
    crop_note = gr.Markdown(elem_classes=["lowdim-note"], elem_id="crop-note")
    # Any value passes Gradio, whose own check prints a traceback and names no control: check_face, the preview
    # and the studio refuse one the photo has no face for in one line (only a client other than the page sends one).
    face = gr.Dropdown(label="Face (0 is the largest)", choices=[0], value=0, visible=False, allow_custom_value=True,
                       elem_id="face")
    return photo, crop, crop_note, face


def _run_column(models: list[str], model_name: str) -> tuple:
    """The run's settings, the buttons that start and stop it, and the stages it went through."""
    model = gr.Dropdown(models, value=model_name, allow_custom_value=True, label="Model",
                        info="an installed model, or type the path of a local diffusers folder or .safetensors file",
                        elem_id="model")
    has_hypernet = ships_a_hypernet(model_name)  # none: the box starts cleared and locked, as model_recipe sets it
    use_hyper = gr.Checkbox(has_hypernet, label=HYPER_LABEL, elem_id="use-hyper", interactive=has_hypernet,
                            info=hyper_info(model_name, has_hypernet))
    hyper_cleared = gr.State(not has_hypernet)  # cleared by the page, not the user: a model with one ticks it again
    # No minimum for Gradio to check, nor its rounding: the studio checks it, naming the field, without a terminal
    # traceback (Number, as Slider, passes the value as sent).
    steps = Number(recipe_steps(has_hypernet), precision=0, label="Finetune steps", info=STEPS_HELP, elem_id="steps")
    rank = Slider(*RANKS, value=4, step=1, label="Rank", elem_id="rank",
                  info="of the LoRA the finetune adds to the prediction (the paper: 4); higher learns more detail, "
                       "in a larger file")
    seed = Number(0, precision=0, label="Run seed", elem_id="seed",
                  info="the LoRA's start, the training noise and the gallery: the same photo and seed give the "
                       "same run")
    preview_steps = Slider(*DENOISING_STEPS, value=30, step=1, label="Gallery denoising steps", elem_id="preview-steps",
                           info="per gallery picture; on a CPU the gallery is most of a run's time: fewer is faster "
                                "(and rougher)")
    with gr.Row():
        go = gr.Button("Personalize", variant="primary", elem_id="personalize")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
    # A refused or stopped job's line, beside the buttons that asked: in the stages box it would read as if it were
    # about the run shown under it (review CR2). HTML: the line is escaped (job_on_page), as a run's words are.
    job_line = gr.HTML(elem_id="job-line", elem_classes=["lowdim-note"])
    job_bar = gr.HTML(elem_id="job-bar")  # the running job's bar: over the line, it would hide a refusal (CZ4)
    # HTML, not markdown: a shared run's notes and stage names show as written (stage_table escapes them)
    stages = gr.HTML(elem_id="stages")
    return model, use_hyper, hyper_cleared, steps, rank, seed, preview_steps, go, stop, job_line, job_bar, stages


class _RunOutputs(NamedTuple):
    """What Personalize and Open fill, in the order ``page_handlers.shown`` returns them."""

    gallery: gr.Gallery
    downloads: gr.File
    stages: gr.HTML
    earlier: gr.Dropdown
    current: gr.State  # what Draw draws
    prompt: gr.Textbox  # Draw's
    drawing: gr.Markdown  # Draw's line on what it draws
    adapter: gr.File  # Draw's file box
    job_line: gr.HTML


def personalize_tab(studio: Studio, models: list[str], page: gr.Blocks) -> tuple[gr.Dropdown, gr.State]:
    """The main tab; returns its list of earlier runs, which the page refreshes on every load, and the folder's
    names as that list was last made (its timer's state). A page load tells it what became of the job a reload
    of the tab stopped (``_told_after_reload``)."""
    with gr.Row():
        with gr.Column(scale=1):
            photo, crop, crop_note, face = _photo_column()
        with gr.Column(scale=1):
            model, use_hyper, hyper_cleared, steps, rank, seed, preview_steps, go, stop, job_line, job_bar, stages = (
                _run_column(models, studio.config.model))
    earlier, reopen = _earlier_runs_row(studio.config)
    gallery = gr.Gallery(label="The subject in the model's styles", columns=7, height=240, elem_id="gallery")
    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
    gr.Markdown(DOWNLOADS_NOTE)
    current = gr.State(None)  # what Draw draws (page_draw.Drawable): the run shown, a file dropped beside it
    prompt, drawing, adapter, more = draw_section(studio, current, model)  # Draw's refusal: on its own line
    outputs = _RunOutputs(gallery, downloads, stages, earlier, current, prompt, drawing, adapter, job_line)
    handlers = PersonalizeHandlers(studio)
    photo.change(show_photo, [photo, model], [crop, crop_note, face], **UNLIMITED)
    model.change(show_model, [photo, model, face], [crop, crop_note, face], **UNLIMITED)  # crops differ by model
    face.input(show_crop, [photo, model, face], [crop, crop_note, face], **UNLIMITED)
    use_hyper.input(recipe_steps, [use_hyper], [steps])
    model.change(model_recipe, [model, use_hyper, hyper_cleared], [use_hyper, steps, hyper_cleared])
    asked = [photo, model, use_hyper, steps, rank, seed, preview_steps, face]
    ran, forgot = _wire_personalize(go, stop, asked, outputs, handlers, [job_bar])
    opened, forgot_opened = _wire_open(reopen, outputs, handlers, [stages])
    # Draw's pictures of the run that was shown go with it, once its outputs (what Draw draws) are in place
    # (page_draw.pictures_beside); a refused or stopped Personalize, also a success to Gradio, shows no other run.
    for then in (ran.success, forgot.then, opened.success, forgot_opened.then):
        more.follow_the_run(then, current)
    return earlier, _wire_timer(page, handlers, earlier, job_line)


def _wire_timer(page: gr.Blocks, handlers: PersonalizeHandlers, earlier: gr.Dropdown, job_line: gr.HTML) -> gr.State:
    """Another tab's run, finished, joins Earlier runs, and its refusal line here goes stale when it ends: a tick
    reads the folder's names and the studio's slot, and updates the page only when one changed (review CZ5).
    Returns the folder's names as the page last listed them (``handlers.refresh``), the timer's state."""
    listed = gr.State(None)
    before = _told_after_reload(page, handlers, job_line)
    gr.Timer(REFRESH_SECONDS).tick(handlers.refresh, [listed, job_line, before], [earlier, job_line, listed],
                                   api_visibility="private", concurrency_limit=None)
    return listed


def _earlier_runs_row(config: StudioConfig) -> tuple[gr.Dropdown, gr.Button]:
    """Earlier runs and its Open: another way to a run than Personalize, so beside it (an opened run fills the
    gallery and Draw below)."""
    with gr.Row():  # any name passes Gradio, as Face's does; chosen_run refuses one that is no run here
        earlier = gr.Dropdown(list_runs(config.out), label=f"Earlier runs (in {config.out.resolve()})",
                              allow_custom_value=True, scale=3, elem_id="earlier")
        reopen = gr.Button("Open", scale=1, elem_id="open")
    return earlier, reopen


def _wire_personalize(go: gr.Button, stop: gr.Button, asked: list[gr.components.Component], shows: _RunOutputs,
                      handlers: PersonalizeHandlers,
                      bar: list[gr.components.Component]) -> tuple[Dependency, Dependency]:
    """Personalize's click (``asked``: its controls' values) checked, started and run, its bar in ``bar``, and Stop;
    returns the run's event and the follow-up of its failure, after which Draw's pictures may go."""
    outputs, job_line = list(shows), shows.job_line
    personalize = job_on_page(outputs, job_line)(handlers.personalize)  # refused or stopped: its line
    # One bar, in its box under the job line (Gradio's default draws it over every output: Earlier runs,
    # the gallery, Downloads and Draw's prompt hidden while a run runs); a failure's badge goes there too, and the
    # follow-up that clears the run shown clears it. Not over the stages box: a run opened meanwhile shows its stage
    # table there, which each progress event of the job would grey out under its bar (review CR1).
    refused = gr.State("")
    # A click's values are checked first, in an event with no outputs: a bad value (a number out of range, no
    # photo) is its one line and leaves the run shown, as a Busy refusal does, even while a run runs. A run that
    # started and failed leaves no earlier run's gallery, downloads or stages under its error, as Open below.
    checked = go.click(handlers.check_request, asked, None, api_visibility="private", **UNLIMITED)
    # Its line then stays on the job line once the toast fades, in place of an earlier stop or refusal (review EK 1).
    checked.failure(handlers.refused, None, [job_line], show_progress="hidden", api_visibility="private")
    # The line holds no earlier refusal or stop while this run goes, and Earlier runs lists what other tabs finished
    # since (CR5), refused or not; the run shown stays whole until the new one replaces it (CZ2). A second click
    # while this tab's own run runs is refused here, before the job's event, whose bar would restart (CZ4).
    started = checked.success(handlers.starting, None, [job_line, shows.earlier, refused], api_visibility="private",
                              show_progress="hidden", **UNLIMITED)
    gate = started.success(handlers.own_job_free, [refused], None, api_visibility="private", **UNLIMITED)
    ran = gate.success(personalize, asked, outputs, **UNLIMITED, show_progress_on=bar)
    forgot = ran.failure(handlers.failed, [shows.current], outputs, show_progress_on=bar, api_visibility="private")
    stop.click(handlers.stop_mine, None, [job_line], api_name="stop", **UNLIMITED)
    return ran, forgot


def _wire_open(reopen: gr.Button, shows: _RunOutputs, handlers: PersonalizeHandlers,
               open_bar: list[gr.components.Component]) -> tuple[Dependency, Dependency]:
    """Open: the run named in Earlier runs shown, its bar in ``open_bar`` (the stages box it fills, as short as
    reading a folder); returns its event and the follow-up of its failure, after which Draw's pictures may go."""
    # A failed Open leaves no other run's gallery, stages or Draw under its error (Earlier runs holds the new name).
    # Open reads the text the box shows: an emptied box commits no value, and the last name would open (CR4).
    opened = reopen.click(handlers.open_run, [shows.earlier], list(shows), js=TYPED_RUN, **UNLIMITED,
                          show_progress_on=open_bar)
    forgot_opened = opened.failure(handlers.open_failed, [shows.current], list(shows), show_progress_on=open_bar,
                                   api_visibility="private")  # and why, on the job line
    return opened, forgot_opened


def _told_after_reload(page: gr.Blocks, handlers: PersonalizeHandlers, job_line: gr.HTML) -> gr.State:
    """A reload ends the tab's page session, whose job Gradio's unload then stops (``build_page``): the new page
    load reads the session the browser kept for the tab and puts that job's stop on the job line, now or at a tick
    of the timer once it has stopped (review EK 2), and has the browser keep this session for the next reload.
    Returns the state of the session before the reload, for the timer."""
    kept = gr.Textbox(visible=False, elem_id="session-before")  # what the browser kept, to and from the page
    before = gr.State("")
    page.load(handlers.reloaded, [kept], [job_line, kept, before], js=SESSION_BEFORE, show_progress="hidden",
              api_visibility="private").then(None, [kept], None, js=KEEP_SESSION, api_visibility="private")
    return before


@on_page
def show_crop(path: str | None, chosen_model: str, index: object) -> tuple:
    return _preview(path, chosen_model, check_face(index))


@on_page
def show_photo(path: str | None, chosen_model: str) -> tuple:  # a new photo starts at its largest face
    return _preview(path, chosen_model, None)


@on_page
def show_model(path: str | None, chosen_model: str, index: object) -> tuple:
    """Another model cuts the photo again at the face chosen, or at its largest where this model offers no
    such face (TinyFaces cuts none): the page's own Face may hold a face of the last model's cut."""
    index = check_face(index)  # one that is no face number is still refused
    try:
        return _preview(path, chosen_model, index)
    except NotOffered:
        return _preview(path, chosen_model, None)


@on_page
def model_recipe(chosen_model: object, use_hypernet: object, cleared_by_page: object) -> tuple:
    """The hypernetwork box, Finetune steps and whether the page cleared the box, for the model chosen. A model
    that ships no hypernetwork clears and locks the box, and a ticked box's steps become the from-zero recipe:
    left ticked, the run would train the prediction's 40 steps from zero, which barely move the identity. A model
    that ships one unlocks the box and ticks again what the page cleared (the user's own choice stays)."""
    ticked, cleared = check_checkbox(use_hypernet, HYPER_LABEL), cleared_by_page is True
    try:
        model = check_model(chosen_model)
    except LowdimError:  # the crop's note names the problem; the controls wait for a model
        return gr.update(), gr.update(), cleared
    if not ships_a_hypernet(model):
        steps = gr.update(value=recipe_steps(False)) if ticked else gr.update()
        return gr.update(value=False, interactive=False, info=hyper_info(model, False)), steps, cleared or ticked
    box = gr.update(interactive=True, info=hyper_info(model, True))
    if not cleared:
        return box, gr.update(), False
    return {**box, "value": True}, gr.update(value=recipe_steps(True)), False


def _preview(path: str | None, chosen_model: str, index: int | None) -> tuple:
    """The crop, its note and the Face list for ``path`` cut as ``chosen_model`` cuts it. A face the photo, cut
    so, does not offer is refused (``NotOffered``), as Personalize refuses it; a photo or model the preview cannot
    use is the note, in bold."""
    if not path:
        return None, "", face_choices(0, None)
    try:
        preview = crop_preview(path, chosen_model, index)
    except NotOffered:  # a Face the page never offered: the request is wrong, not the photo
        raise
    except LowdimError as error:
        return None, f"**{page_line(first_line(error))}**", face_choices(0, None)
    return preview.image, preview.message, face_choices(preview.faces, index)
