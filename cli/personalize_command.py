"""``lowdim personalize``: the main job, a thin wrapper over lowdim_sd.personalize."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lowdim_cli.console import out, user_text
from lowdim_cli.info_commands import parse_options
from lowdim_cli.sd_commands import typed_options
from lowdim_cli.shared_options import (
    CUDA_GRAPHS_HELP,
    CropMargin,
    Device,
    Dtype,
    GradientCheckpointing,
    Model,
    ModelConfig,
    Resolution,
    SaveDtype,
    SpaceOptions,
)
from lowdim_cli.starting import importing_libraries
from lowdim_sd import defaults

if TYPE_CHECKING:
    from lowdim_sd.personalize import PersonalizeResult


def personalize(
    ctx: typer.Context,
    model: Model,
    image: Annotated[Path, typer.Option("--image", "-i", help="One face image (any common format).")],
    space: Annotated[str, typer.Option(
        "--space", "-s", help="Weight space of the initial adapter (see `lowdim spaces`).")] = "lidb",
    set_: SpaceOptions = None,
    layers: Annotated[str | None, typer.Option(
        "--layers", "-l",
        help="Layer set (default: the model's own, first in `lowdim models`; unet+text, the paper's, for sd15 and "
             "tinyfaces). A set inside the hypernetwork's keeps that part of its "
             "prediction: 'unet' leaves the text encoder alone, which follows prompts such as 'at night' far better "
             "for less identity on TinyFaces (docs/ladder.md, rung 11).")] = None,
    steps: Annotated[int | None, typer.Option(
        help=f"Fast-finetuning steps (default: {defaults.FINETUNE_STEPS} after a hypernetwork's prediction, as in "
             f"the paper: --hypernet, or the one the model ships, as tinyfaces does; --no-hyper keeps "
             f"{defaults.FINETUNE_STEPS}, the paper's ablation; {defaults.SCRATCH_STEPS} with no hypernetwork at "
             f"all). 0 keeps the prediction alone, as --only-hyper does.")] = None,
    rank: Annotated[int, typer.Option(help="Rank of the relaxed LoRA trained on top (the paper: r > 1).")] = 4,
    lr: Annotated[float | None, typer.Option(
        help=f"Fast-finetuning learning rate (default: the model's rate after a prediction, 1e-2 for tinyfaces; "
             f"else {defaults.FINETUNE_LR:g}).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Copies of the one image per finetune step, each with its own noise (default: the model's after a "
             "prediction, 8 for tinyfaces, where 8 at 1e-2 bind far more identity than 1 at 3e-3 for about twice "
             "the time; else 1, the paper's).")] = None,
    keep_styles: Annotated[float, typer.Option(
        help="Weight of a loss that keeps what the preview's style words add (\"at night\", \"wearing a hat\") "
             "through the finetune, for 1.6x its time; trades identity for prompt following (tinyfaces, "
             "50 test faces, looks in words: identity 0.51 / 0.40 and style accuracy 0.48 / 0.82 at 0 / 0.05; "
             "full DreamBooth 0.29 / 1.00). 0: off, the paper's.")] = 0.0,
    describe: Annotated[bool | None, typer.Option(
        "--describe/--no-describe",
        help="Read the face's looks (hair, skin, glasses) from the photo and name them after \"[V] face\" in the "
             "preview prompts, as the model's training captions did; the words are printed and kept in the "
             "adapter file. Default: on when the model ships a describer (tinyfaces does).",
        show_default=False)] = None,
    token: Annotated[str | None, typer.Option(
        help="Identifier that [V] stands for in prompts. Default: the one the hypernetwork learned under (its "
        "precompute's --token), else sks.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(
        help="Seed of the LoRA's init, the training noise and the preview (a hypernetwork's prediction keeps "
             "the bases seed it was trained with).")] = 0,
    export: Annotated[list[str] | None, typer.Option(
        help="Also export as a plain LoRA: diffusers and/or kohya (repeatable).")] = None,
    preview: Annotated[bool, typer.Option(help="Write preview.png: the subject in several styles.")] = True,
    preview_steps: Annotated[int, typer.Option(
        help="Denoising steps per preview image; on a CPU the preview is most of the run, so fewer is "
             "much faster (or --no-preview).")] = 30,
    preview_draw: Annotated[list[str] | None, typer.Option(
        help="How a preview row draws the adapter (repeatable: one row each): S its scale (lowdim generate "
             "--adapter FILE:S), te=T its text encoder's part, start=F and end=F the fractions of the steps its "
             "UNet part draws from and until (--text-encoder-scale, --adapter-start, --adapter-end), ca=C its UNet "
             "cross-attention (--cross-attention-scale), joined by @. te=0@start=0.3 keeps the styles that the "
             "whole adapter overwrites. Default: the model's (tinyfaces: 1 and te=0@start=0.3, sd15: 1).")
    ] = None,
    hypernet: Annotated[Path | None, typer.Option(
        help="A trained hypernetwork checkpoint: predicts the initial LiDB weights from the image "
             "(default: the one the model ships, if it fits --space and --layers; tinyfaces ships one).")] = None,
    no_hyper: Annotated[bool, typer.Option("--no-hyper", help="Ablation: fast finetune from zero.")] = False,
    only_hyper: Annotated[bool, typer.Option("--only-hyper", help="Ablation: the prediction alone.")] = False,
    iterations: Annotated[int | None, typer.Option(
        help="Hypernetwork refinement iterations k (default: the checkpoint's).")] = None,
    crop: Annotated[bool | None, typer.Option(
        "--crop/--no-crop", help="Crop the image to the face, aligned (needs the faces extra); default: the model's "
        "setting (on for sd15 and model paths, off for tinyfaces).", show_default=False)] = None,
    crop_margin: CropMargin = 0.6,
    face_index: Annotated[int | None, typer.Option(
        help="Which face when the photo has several (0 is the largest; default: the largest).")] = None,
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder: adapter.safetensors, preview.png, and any --export files.")] = Path(
        "personalized"),
    overwrite: Annotated[bool, typer.Option("--overwrite",
        help="Replace the adapter, exports and preview an earlier run left in --out.")] = False,
    gradient_checkpointing: GradientCheckpointing = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs",
        help=CUDA_GRAPHS_HELP + " Not with --gradient-checkpointing.")] = False,
    resolution: Resolution = None,
    save_dtype: SaveDtype = "fp16",
    device: Device = "auto",
    dtype: Dtype = "auto",
    model_config: ModelConfig = None,
):
    """Personalize a model from ONE face image: initial adapter, then rank-relaxed fast finetuning.

    Writes OUT/adapter.safetensors (what `lowdim generate -a` takes), OUT/preview.png (unless --no-preview) and,
    with --export FORMAT, OUT/adapter.FORMAT.safetensors.

    Example: lowdim personalize --model tinyfaces --image face.jpg --out me

    No face at hand (a checkout has examples/face.png)? lowdim tinyfaces-identities -o faces --count 1 --split test
    writes one of the 32x32 made-up faces tinyfaces knows, for -i faces/id-00000.png; a photo of a real person
    comes out as one of those faces too.
    """
    with importing_libraries():
        from lowdim_sd.personalize import PersonalizeJob
        from lowdim_sd.personalize import personalize as run

    if only_hyper or steps == 0:
        refuse_typed_finetune_flags(ctx, only_hyper)
    if not preview and "preview_steps" in typed_options(ctx):  # --preview-steps 30, at its default: the job can't tell
        from lowdim_sd.personalize_checks import preview_conflict

        raise preview_conflict("--preview-steps")
    job = PersonalizeJob(model=model, image=image, space=space, space_options=parse_options(set_ or []),
                         layers=layers, steps=steps, rank=rank, learning_rate=lr, batch_size=batch_size,
                         keep_styles=keep_styles, describe=describe, token=token,
                         seed=seed, out=out_dir, export=export or [], preview=preview, preview_steps=preview_steps,
                         preview_draws=tuple(preview_draw) if preview_draw else None,
                         resolution=resolution, save_dtype=save_dtype, device=device, dtype=dtype,
                         model_config=model_config,
                         hypernet=hypernet, no_hyper=no_hyper, only_hyper=only_hyper, iterations=iterations,
                         crop=crop, crop_margin=crop_margin, face_index=face_index, overwrite=overwrite,
                         gradient_checkpointing=gradient_checkpointing, cuda_graphs=cuda_graphs)
    show_result(run(job), model, keep_styles, model_config)


def refuse_typed_finetune_flags(ctx: typer.Context, only_hyper: bool) -> None:
    """A finetune flag typed beside --only-hyper or --steps 0, even at its default value (--rank 4), which the
    job's own check cannot tell from no flag: the run would drop it without a word."""
    from lowdim_sd.personalize_checks import FINETUNE_FLAGS, only_hyper_conflict

    typed = typed_options(ctx)
    if ctx.params.get("steps") == 0:  # says "no finetune" too, as the job's own check allows
        typed.discard("steps")
    for flag in FINETUNE_FLAGS.values():
        if any(flag in param.opts and param.name in typed for param in ctx.command.params):
            raise only_hyper_conflict(flag, only_hyper)


def show_result(result: PersonalizeResult, model: str, keep_styles: float, model_config: str | None = None) -> None:
    """The stage times, the files written, and the `lowdim generate` line that draws the subject, with the
    ``--model-config`` the run was given: a checkpoint naming no configs loads only with it offline."""
    from lowdim_sd.draw_parts import adapter_layers, suggested_flags

    table = Table(title="stages")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in result.stages.items():
        table.add_row(name, f"{seconds:.2f}")
    table.add_row("[bold]total", f"[bold]{sum(result.stages.values()):.2f}")
    out.print(table)
    size = result.adapter.stat().st_size
    out.print(f"adapter: {user_text(result.adapter, 'bold')} ({size:,} bytes)")
    if result.looks:
        where = "the preview and the draw line below" if result.preview else "the draw line below"
        out.print(f"looks read from the photo, named after [V] in {where}: {user_text(result.looks.strip(), 'bold')}")
    for path in [*result.exports, *([result.preview] if result.preview else [])]:
        out.print(f"wrote {user_text(path, 'bold')}")
    # drawn apart, the adapter's parts need the looks in words
    draw = draw_command(model, result.adapter, result.subject_prompt(" at night"), model_config)
    # Only flags that act on the adapter's layers: --layers unet-self has no text-encoder or cross-attention part.
    keep, every = suggested_flags(keep_styles, adapter_layers(result.adapter))
    every = f", and {every} too for every style at less of the face" if every else ""
    out.print(f"draw it: {user_text(draw)}" + (f"  (add {keep} to keep more of each style{every})" if keep else ""))


def draw_command(model: str, adapter: Path, prompt: str, model_config: str | None = None) -> str:
    """The `lowdim generate` line that draws ``adapter``'s subject, as typed: the model and ``--model-config`` a run
    was given (a checkpoint naming no configs loads only with it offline), each word quoted for the shell."""
    configs = f" --model-config {shlex.quote(model_config)}" if model_config else ""
    return f"lowdim generate -m {shlex.quote(model)}{configs} -a {shlex.quote(str(adapter))} -p {shlex.quote(prompt)}"


def register(app: typer.Typer) -> None:
    app.command()(personalize)
