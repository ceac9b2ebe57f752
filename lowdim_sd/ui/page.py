"""The Gradio page of ``lowdim ui``: layout and wiring only; every action is a ``Studio`` call.

A user mistake (not an image, no face, a busy studio, an unknown model) becomes one line on the
page (``gr.Error``) and the server keeps serving; anything else is also printed to the terminal.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any

import gradio as gr

from lowdim.errors import LowdimError, first_line
from lowdim_sd import defaults
from lowdim_sd.draw_parts import draw_text, every_style_parts, suggested_parts
from lowdim_sd.ui.studio import RunRecord, RunSettings, Studio, crop_preview, list_runs, read_run

INTRO = ("# lowdim: you, in any style, from one photo\n"
         "Drop a face photo, check the crop, press **Personalize**. The hypernetwork predicts a tiny adapter from "
         "the photo, then a rank-relaxed LoRA finetunes it for a few steps (HyperDreamBooth). `[V]` in a prompt is "
         "the subject.")
DOWNLOADS_NOTE = ("`adapter.safetensors`: lowdim's own file (`lowdim generate -a`). `adapter.diffusers.safetensors`: "
                  "diffusers' `load_lora_weights` and peft. `adapter.kohya.safetensors`: A1111, ComfyUI, Forge.")
CSS = ".lowdim-note {min-height: 1.5em}"
# (label, short form): the whole adapter, and its parts apart as docs/results.md measured them on TinyFaces;
# the third is what `personalize` suggests for its files (the page runs no --keep-styles), the fourth trades some
# of the face for the last styles (session 24).
DRAW_CHOICES = [("whole", "1"), ("parts apart: text encoder's part off, UNet part from 30%", "te=0@start=0.3"),
                ("parts apart, most of the styles: UNet part from 30% to 80%",
                 draw_text(1.0, suggested_parts(keep_styles=0.0))),
                ("parts apart, every style: and its cross-attention at 0.25, for some of the face",
                 draw_text(1.0, every_style_parts(keep_styles=0.0)))]


def on_page(fn: Callable) -> Callable:
    """Run ``fn``; a lowdim error becomes the page's one-line message, anything else too (and a traceback
    on the terminal, where the person who runs the server can report it)."""
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LowdimError as error:
            raise gr.Error(first_line(error), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as error:
            traceback.print_exc()
            raise gr.Error(f"unexpected error: {first_line(error)} (details in the terminal)",
                           print_exception=False) from None
    return wrapped


def whole(value: float | None, label: str) -> int:
    """A number field as an int; Gradio passes None for an emptied field, which int() would turn into a
    Python error on the page."""
    if value is None:
        raise LowdimError(f"{label} is empty: type a whole number")
    return int(value)


def stage_table(record: RunRecord) -> str:
    rows = "\n".join(f"| {name} | {seconds:.1f} |" for name, seconds in record.stages.items())
    notes = "".join(f"**Note:** {note}\n\n" for note in record.notes)
    return (f"**Run `{record.name}`** done in {record.total_seconds:.1f} s\n\n{notes}| stage | seconds |\n|---|---:|\n"
            f"{rows}")


def shown(record: RunRecord) -> tuple:
    """The outputs every way of showing a run fills: gallery, downloads, stage times, runs list, current run."""
    gallery = [(str(path), caption) for path, caption in record.gallery]
    files = [str(path) for path in record.downloads.values()]
    runs = list_runs(record.folder.parent)
    return gallery, files, stage_table(record), gr.update(choices=runs, value=record.name), record.name


def face_choices(count: int, chosen: int | None) -> dict:
    return gr.update(choices=list(range(max(count, 1))), value=chosen or 0, visible=count > 1)


def build_page(studio: Studio) -> gr.Blocks:
    from lowdim.registry import get_registry

    models = list(get_registry().backends)
    with gr.Blocks(title="lowdim", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Tab("Personalize"):
            earlier = personalize_tab(studio, models)
        with gr.Tab("Evaluate"):
            evaluate_tab(studio)
        # On every page load, not once at start: a tab opened later lists the runs made since.
        page.load(lambda: gr.update(choices=list_runs(studio.config.out)), outputs=earlier)
    return page


def _photo_column() -> tuple:
    """The photo, the crop the model will learn from, a note on it, and which face when there are several."""
    photo = gr.File(label="Face photo (JPEG, PNG, WebP; up to 40 MP)", type="filepath", elem_id="photo")
    crop = gr.Image(label="What the model learns", interactive=False, height=256, elem_id="crop")
    crop_note = gr.Markdown(elem_classes=["lowdim-note"], elem_id="crop-note")
    face = gr.Dropdown(label="Face (0 is the largest)", choices=[0], value=0, visible=False, elem_id="face")
    return photo, crop, crop_note, face


def _run_column(models: list[str], model_name: str) -> tuple:
    """The run's settings, the button that starts it and the stages it went through."""
    model = gr.Dropdown(models, value=model_name, allow_custom_value=True, label="Model",
                        info="an installed model, or a local diffusers folder or .safetensors file", elem_id="model")
    use_hyper = gr.Checkbox(True, label=f"Start from the hypernetwork's prediction (off: from zero, which "
                                        f"needs about {defaults.SCRATCH_STEPS} steps)")
    steps = gr.Number(defaults.FINETUNE_STEPS, precision=0, minimum=1, label="Finetune steps",
                      info="the paper: 40 after the prediction", elem_id="steps")
    rank = gr.Slider(2, 16, value=4, step=1, label="Rank of the relaxed LoRA")
    seed = gr.Number(0, precision=0, label="Seed")
    preview_steps = gr.Slider(1, 50, value=30, step=1, label="Denoising steps per gallery picture",
                              elem_id="preview-steps")
    go = gr.Button("Personalize", variant="primary", elem_id="personalize")
    stages = gr.Markdown(elem_id="stages")
    return model, use_hyper, steps, rank, seed, preview_steps, go, stages


def _draw_row() -> tuple:
    """A prompt, the adapter's scale, how to draw its parts, a seed, and the button that draws."""
    prompt = gr.Textbox("a photo of a [V] face wearing a hat", label="Prompt ([V] is the subject)", scale=3)
    scale = gr.Slider(0.0, 1.5, value=1.0, step=0.05, label="Adapter scale", scale=2)
    how = gr.Dropdown(DRAW_CHOICES, value="1", allow_custom_value=True, label="How to draw", scale=2,
                      info="the adapter's parts apart keep styles (te=T, start=F, end=F, ca=C; docs/cli.md)")
    draw_seed = gr.Number(0, precision=0, label="Seed", scale=1)
    draw = gr.Button("Draw", scale=1)
    return prompt, scale, how, draw_seed, draw


def personalize_tab(studio: Studio, models: list[str]) -> gr.Dropdown:
    """The main tab; returns its list of earlier runs, which the page refreshes on every load."""
    config = studio.config
    with gr.Row():
        with gr.Column(scale=1):
            photo, crop, crop_note, face = _photo_column()
        with gr.Column(scale=1):
            model, use_hyper, steps, rank, seed, preview_steps, go, stages = _run_column(models, config.model)
    gallery = gr.Gallery(label="The subject in the model's styles", columns=7, height=240, elem_id="gallery")
    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
    gr.Markdown(DOWNLOADS_NOTE)
    with gr.Row():
        prompt, scale, how, draw_seed, draw = _draw_row()
    drawn = gr.Gallery(label="More pictures", columns=4, height=280, elem_id="drawn")
    with gr.Row():
        earlier = gr.Dropdown(list_runs(config.out), label=f"Earlier runs (in {config.out})", elem_id="earlier")
        reopen = gr.Button("Open", elem_id="open")
    current = gr.State(None)

    @on_page
    def show_crop(path: str | None, chosen_model: str, index: int | None):
        if not path:
            return None, "", face_choices(0, None)
        try:
            preview = crop_preview(path, chosen_model, index)
        except LowdimError as error:
            return None, f"**{first_line(error)}**", face_choices(0, None)
        return preview.image, preview.message, face_choices(preview.faces, index)

    @on_page
    def personalize(path: str | None, chosen_model: str, hyper: bool, step_count: float, lora_rank: float,
                    run_seed: float, sample_steps: float, index: int | None,
                    progress: gr.Progress = gr.Progress()) -> tuple:
        if not path:
            raise LowdimError("drop a face photo first")
        stage = {"name": "starting"}

        def hear(label: str, done: int, total: int) -> None:
            if done == 0:
                stage["name"] = label
                progress(0, desc=label)
            else:
                progress((done, total), desc=f"{stage['name']}: {label}")

        settings = RunSettings(model=chosen_model, use_hypernet=hyper,
                               steps=None if step_count is None else int(step_count),  # empty: the recipe's
                               rank=whole(lora_rank, "LoRA rank"), seed=whole(run_seed, "Seed"),
                               face_index=int(index) if index else None,
                               preview_steps=whole(sample_steps, "Preview steps"))
        return shown(studio.personalize(path, settings, hear))

    @on_page
    def open_run(name: str | None):
        if not name:
            raise LowdimError("pick an earlier run first")
        return shown(read_run(config.out, name))

    @on_page
    def draw_more(run: str | None, text: str, adapter_scale: float, how_to_draw: str, first_seed: int,
                  sample_steps: int):
        if not run:
            raise LowdimError("personalize or open a run first: pictures are drawn with its adapter")
        return [(image, caption) for image, caption in studio.draw(run, text, adapter_scale, whole(first_seed, "Seed"),
                                                                   whole(sample_steps, "Steps"), how=how_to_draw)]

    # Every click reaches the studio, which refuses a second job itself with a message (Gradio would
    # otherwise drop a click while its event runs, or queue it out of sight).
    unlimited = {"concurrency_limit": None, "trigger_mode": "multiple"}
    photo.change(show_crop, [photo, model, face], [crop, crop_note, face], **unlimited)
    model.change(show_crop, [photo, model, face], [crop, crop_note, face], **unlimited)  # crops differ by model
    face.input(show_crop, [photo, model, face], [crop, crop_note, face], **unlimited)
    outputs = [gallery, downloads, stages, earlier, current]
    go.click(personalize, [photo, model, use_hyper, steps, rank, seed, preview_steps, face], outputs, **unlimited)
    reopen.click(open_run, [earlier], outputs, **unlimited)
    draw.click(draw_more, [current, prompt, scale, how, draw_seed, preview_steps], [drawn], **unlimited)
    return earlier


def evaluate_tab(studio: Studio) -> None:
    from lowdim_sd.eval.paper_metrics import PAPER_METRICS

    gr.Markdown("Score generated pictures against a reference photo, as `lowdim eval` does (docs/eval.md).")
    with gr.Row():
        generated = gr.File(label="Generated pictures", file_count="multiple", type="filepath", elem_id="generated")
        reference = gr.File(label="Reference photo", type="filepath", elem_id="reference")
    with gr.Row():
        prompt = gr.Textbox("a photo of a [V] face", label="Their prompt (for CLIP-T)")
        token = gr.Textbox("sks", label="Identifier that [V] stood for")
        metrics = gr.Textbox(",".join(PAPER_METRICS), label="Metrics (registered names, comma list)",
                             elem_id="metrics")
    score = gr.Button("Score", variant="primary", elem_id="score")
    table = gr.Markdown(elem_id="eval-table")

    @on_page
    def run(files: list[str] | None, photo: str | None, text: str, identifier: str, names: str) -> str:
        if not photo:
            raise LowdimError("drop the reference photo of the subject")
        return studio.evaluate(list(files or []), photo, text, identifier, names)

    score.click(run, [generated, reference, prompt, token, metrics], [table], concurrency_limit=None,
                trigger_mode="multiple")
