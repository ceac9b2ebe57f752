"""The Gradio page of ``lowdim ui``: layout and wiring only; every action is a ``Studio`` call.

A user mistake (not an image, no face, an unknown model, a number out of range) becomes one line on the page
(``gr.Error``) and the server keeps serving; anything else is also printed to the terminal. A job refused (the
studio is busy) or stopped is no mistake: its line goes in the job line under Personalize and Stop
(``job_on_page``), above the running Personalize's bar (in a box of its own: the line stays readable), never in
the stages box, which holds only the run shown's stage times (or an Open's bar): a run opened while the job runs
keeps its own beside its gallery, and the run shown stays whole until a new run replaces it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

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
    is_empty,
)
from lowdim_sd.ui.drawing import default_prompt
from lowdim_sd.ui.page_draw import Drawable, draw_section, drawing_line, without
from lowdim_sd.ui.page_evaluate import evaluate_tab
from lowdim_sd.ui.page_parts import (
    OWN_JOB_RUNNING,
    File,
    Number,
    OpensMeanwhile,
    Slider,
    counted_inputs,
    error_line,
    html_text,
    job_on_page,
    on_page,
    page_line,
    progress_listener,
    session,
    whole,
)
from lowdim_sd.ui.photos import crop_preview
from lowdim_sd.ui.run_folders import RunRecord, chosen_run, list_runs
from lowdim_sd.ui.studio import Busy, RunSettings, Stopped, Studio, checked_request, ships_a_hypernet

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
HYPER_LABEL = "Start from the hypernetwork's prediction"
# Earlier runs' text as shown, for Open: Gradio's Dropdown that takes typed names commits no emptied text, so its
# value would still be the last name opened.
TYPED_RUN = "(name) => { const box = document.querySelector('#earlier input'); return [box ? box.value : name]; }"


def hyper_info(model: str, has_hypernet: bool) -> str:
    """The hypernetwork box's help: what clearing it does, or why a model without one has it cleared."""
    why = "off" if has_hypernet else f"{model} ships no hypernetwork"
    return f"{why}: the LoRA starts from zero, and Finetune steps becomes {defaults.SCRATCH_STEPS}, which that needs"


@on_page
def recipe_steps(use_hypernet: bool) -> int:
    """What Finetune steps becomes when the hypernetwork box is ticked or cleared: a LoRA from zero needs
    SCRATCH_STEPS (the box's own label says so); 40 from zero would be the paper's ablation."""
    return defaults.FINETUNE_STEPS if check_checkbox(use_hypernet, HYPER_LABEL) else defaults.SCRATCH_STEPS


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
    they leave the run shown. The job line is emptied: the error is an Open's line (a Personalize's: ``failed``)."""
    left = without(what, "run")
    return [], None, "", gr.update(), left, gr.update(), drawing_line(left), gr.update(), ""


def face_choices(count: int, chosen: int | None) -> dict:
    return gr.update(choices=list(range(max(count, 1))), value=chosen or 0, visible=count > 1)


def build_page(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="lowdim", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Tab("Personalize"):
            earlier = personalize_tab(studio, installed_models())
        with gr.Tab("Evaluate"):
            evaluate_tab(studio)
        # On every page load, not once at start: a tab opened later lists the runs made since.
        page.load(lambda: gr.update(choices=list_runs(studio.config.out)), outputs=earlier)

        def closed(request: gr.Request) -> None:  # a closed or reloaded tab stops the run it started
            studio.stop(owner=request.session_hash, wait=0)

        page.unload(closed)
    counted_inputs(page)
    return page


def _photo_column() -> tuple:
    """The photo, the crop the model will learn from, a note on it, and which face when there are several."""
    photo = File("Face photo", label="Face photo (JPEG, PNG, WebP; up to 40 MP)", type="filepath", elem_id="photo")
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


def personalize_tab(studio: Studio, models: list[str]) -> gr.Dropdown:
    """The main tab; returns its list of earlier runs, which the page refreshes on every load."""
    config = studio.config
    with gr.Row():
        with gr.Column(scale=1):
            photo, crop, crop_note, face = _photo_column()
        with gr.Column(scale=1):
            model, use_hyper, hyper_cleared, steps, rank, seed, preview_steps, go, stop, job_line, job_bar, stages = (
                _run_column(models, config.model))
    # Another way to a run than Personalize, so beside it: an opened run fills the gallery and Draw below.
    with gr.Row():  # any name passes Gradio, as Face's does; chosen_run refuses one that is no run here
        earlier = gr.Dropdown(list_runs(config.out), label=f"Earlier runs (in {config.out.resolve()})",
                              allow_custom_value=True, scale=3, elem_id="earlier")
        reopen = gr.Button("Open", scale=1, elem_id="open")
    gallery = gr.Gallery(label="The subject in the model's styles", columns=7, height=240, elem_id="gallery")
    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
    gr.Markdown(DOWNLOADS_NOTE)
    current = gr.State(None)  # what Draw draws (page_draw.Drawable): the run shown, a file dropped beside it
    prompt, drawing, adapter, more = draw_section(studio, current, model)  # Draw's refusal: on its own line
    outputs = [gallery, downloads, stages, earlier, current, prompt, drawing, adapter, job_line]
    handlers = PersonalizeHandlers(studio)
    # Every click reaches the studio, which refuses a second job itself with a message (Gradio would
    # otherwise drop a click while its event runs, or queue it out of sight).
    unlimited: dict[str, Any] = {"concurrency_limit": None, "trigger_mode": "multiple"}
    photo.change(show_photo, [photo, model], [crop, crop_note, face], **unlimited)
    model.change(show_model, [photo, model, face], [crop, crop_note, face], **unlimited)  # crops differ by model
    face.input(show_crop, [photo, model, face], [crop, crop_note, face], **unlimited)
    use_hyper.input(recipe_steps, [use_hyper], [steps])
    model.change(model_recipe, [model, use_hyper, hyper_cleared], [use_hyper, steps, hyper_cleared])
    personalize = job_on_page(outputs, job_line)(handlers.personalize)  # refused or stopped: its line
    # One bar, in its box under the job line (Gradio's default draws it over every output: Earlier runs,
    # the gallery, Downloads and Draw's prompt hidden while a run runs); a failure's badge goes there too, and the
    # follow-up that clears the run shown clears it. Not over the stages box: a run opened meanwhile shows its stage
    # table there, which each progress event of the job would grey out under its bar (review CR1). Open's own bar,
    # as short as reading a folder, is in the stages box it fills.
    bar, open_bar, refused = [job_bar], [stages], gr.State("")
    asked = [photo, model, use_hyper, steps, rank, seed, preview_steps, face]
    # A click's values are checked first, in an event with no outputs: a bad value (a number out of range, no
    # photo) is its one line and leaves the run shown, as a Busy refusal does, even while a run runs. A run that
    # started and failed leaves no earlier run's gallery, downloads or stages under its error, as Open below.
    checked = go.click(handlers.check_request, asked, None, api_visibility="private", **unlimited)
    # The line holds no earlier refusal or stop while this run goes, and Earlier runs lists what other tabs finished
    # since (CR5), refused or not; the run shown stays whole until the new one replaces it (CZ2). A second click
    # while this tab's own run runs is refused here, before the job's event, whose bar would restart (CZ4).
    started = checked.success(handlers.starting, None, [job_line, earlier, refused], api_visibility="private",
                              show_progress="hidden", **unlimited)
    gate = started.success(handlers.own_job_free, [refused], None, api_visibility="private", **unlimited)
    ran = gate.success(personalize, asked, outputs, **unlimited, show_progress_on=bar)
    forgot = ran.failure(handlers.failed, [current], outputs, show_progress_on=bar, api_visibility="private")
    stop.click(handlers.stop_mine, None, [job_line], api_name="stop", **unlimited)
    # A failed Open leaves no other run's gallery, stages or Draw under its error (Earlier runs holds the new name).
    # Open reads the text the box shows: an emptied box commits no value, and the last name would open (CR4).
    opened = reopen.click(handlers.open_run, [earlier], outputs, js=TYPED_RUN, **unlimited,
                          show_progress_on=open_bar)
    forgot_opened = opened.failure(forget_run, [current], outputs, show_progress_on=open_bar,
                                   api_visibility="private")
    # Draw's pictures of the run that was shown go with it, once its outputs (what Draw draws) are in place
    # (page_draw.pictures_beside); a refused or stopped Personalize, also a success to Gradio, shows no other run.
    for then in (ran.success, forgot.then, opened.success, forgot_opened.then):
        more.follow_the_run(then, current)
    return earlier


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


class PersonalizeHandlers:
    """What the tab's Personalize, Stop and Open do with one studio, as functions of the controls' values: the
    tab only wires them. Their names are the page's API names (/personalize, /open_run)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.opens = OpensMeanwhile()  # a run its session opened while its Personalize ran stays on screen
        self.failures: dict[str, tuple[str, bool]] = {}  # by session: its failed job's line, whether it opened a run

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
                self.failures[owner] = (error_line(error), opened.is_set())
                raise
        return done_beside(record) if opened.is_set() else shown(record)

    @on_page
    def check_request(self, path: str | None, chosen_model: str, hyper: bool, step_count: float | None,
                      lora_rank: float, run_seed: float | None, sample_steps: float, index: object) -> None:
        """What Personalize refuses before a job starts, checked before the page runs it (``personalize_tab``)."""
        checked_request(*asked_run(path, chosen_model, hyper, step_count, lora_rank, run_seed, sample_steps, index))

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
        line, opened = self.failures.pop(session(request), ("", False))
        kept = (gr.update(),) * 8 if opened else forget_run(what)[:-1]
        return (*kept, html_text(f"the personalization failed: {line}") if line else "")

    @on_page
    def stop_mine(self, request: gr.Request | None = None) -> str:
        """Only the job this session started: another tab's is theirs to stop (docs/cli.md: no override but the
        server's Ctrl-C)."""
        return html_text(self.studio.stop(owner=session(request)))  # the job line is HTML

    @on_page
    def open_run(self, name: object, request: gr.Request | None = None) -> tuple:
        record = chosen_run(self.studio.config.out, name)
        self.opens.opened(session(request))  # only a run shown: a failed Open clears the page as before
        return shown(record)


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
