"""``lowdim train``, ``generate``, ``export`` and ``merge``: thin wrappers over lowdim_sd."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lowdim.option_words import counted
from lowdim_cli.console import out, user_text
from lowdim_cli.info_commands import parse_options
from lowdim_cli.shared_options import (
    CUDA_GRAPHS_HELP,
    SPACE_OPTIONS_HELP,
    Augment,
    CheckpointEvery,
    Device,
    Dtype,
    GradientCheckpointing,
    MergeDtype,
    MixedPrecision,
    Model,
    ModelConfig,
    Resolution,
    Resume,
    SaveDtype,
    TrainingPrompt,
)
from lowdim_cli.starting import importing_libraries
from lowdim_sd import defaults


def train(
    ctx: typer.Context,
    model: Model,
    images: Annotated[list[Path] | None, typer.Option(
        "--images", "-i", help="Reference image(s) or a folder of them (repeatable).")] = None,
    subjects: Annotated[Path | None, typer.Option(
        help="A folder with one sub-folder of images per subject: K adapters trained in one batch.")] = None,
    space: Annotated[str, typer.Option(
        "--space", "-s", help="Weight space (see `lowdim spaces`); not with --full or --init.")] = "lidb",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help=SPACE_OPTIONS_HELP.removesuffix(".") + "; not with --full or --init (whose LoRA's rank is "
                      "--rank).")] = None,
    layers: Annotated[str | None, typer.Option(
        "--layers", "-l",
        help="Layer set: unet+text (default, the paper's), unet, unet-self, unet-cross, text, or globs; not with "
             "--full or --init (its LoRA trains the initial adapter's layers).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Full DreamBooth baseline: train the UNet itself.")] = False,
    train_text_encoder: Annotated[bool, typer.Option("--train-text-encoder",
        help="With --full, also train the text encoder.")] = False,
    init: Annotated[Path | None, typer.Option(
        help="Rank-relaxed fast finetuning (paper §4.3) from this adapter, e.g. a predicted LiDB.")] = None,
    rank: Annotated[int, typer.Option(help="With --init: rank of the new LoRA (r > 1 relaxes the rank).")] = 4,
    merge_frozen: Annotated[bool, typer.Option(help="With --init: fold the initial adapter into the weights.")] = True,
    steps: Annotated[int | None, typer.Option(
        help=f"Optimizer steps (default {defaults.STEPS}; {defaults.FINETUNE_STEPS} with --init).")] = None,
    lr: Annotated[float | None, typer.Option(
        help="Learning rate (default: full 5e-6, lora 1e-4, lidb 2e-3, ti 5e-3, --init 1e-3; a plugin space: "
             "its declared rate, else 1e-4).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per subject per step.")] = 1,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    dropout: Annotated[float, typer.Option(
        help="Share of each adapted layer's input zeroed at random for the adapter while it trains (peft's "
             "lora_dropout; the model's own path sees the whole input): a regularizer against copying a few photos, "
             "0.05 to 0.1 as commonly used for LoRA. 0 turns it off; generation never drops. Not with --full or "
             "--space ti.")] = 0.0,
    prompt: TrainingPrompt = "a [V] face",
    token: Annotated[str | None, typer.Option(
        help="The rare identifier that [V] stands for, one word (default: sks; with --init, the initial adapter's "
             "own).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of init, noise, timesteps and augmentation.")] = 0,
    augment: Augment = True,
    mixed_precision: MixedPrecision = "no",
    gradient_checkpointing: GradientCheckpointing = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs",
        help=CUDA_GRAPHS_HELP + " Not with --gradient-checkpointing or --mixed-precision.")] = False,
    checkpoint_every: CheckpointEvery = 0,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (adapters, checkpoints).")] = Path("out"),
    resume: Resume = False,
    overwrite: Annotated[bool, typer.Option("--overwrite",
        help="Replace the adapters of an earlier run in --out (and start over on its checkpoints).")] = False,
    resolution: Resolution = None,
    save_dtype: SaveDtype = "fp16",
    device: Device = "auto",
    dtype: Dtype = "auto",
    model_config: ModelConfig = None,
):
    """Personalize a model on reference images: LiDB by default, any space, full DreamBooth, or rank-relaxed.

    Examples, each after a line saying what it trains:
    \v\b
      # LiDB, 400 steps
      lowdim train -m tinyfaces -i face.png --out me-lidb
      # LoRA DreamBooth
      lowdim train -m sd15 -i photos/ --space lora --set rank=4
      # fast finetune, 40 steps
      lowdim train -m sd15 -i face.jpg --init predicted.safetensors --rank 4
      # one LiDB per sub-folder, batched
      lowdim train -m tinyfaces --subjects people/ --out batch
    """
    from lowdim.errors import LowdimError

    with importing_libraries():
        from lowdim_sd.resume_words import rate_typed
        from lowdim_sd.train import TrainConfig
        from lowdim_sd.workflows import TrainJob, check_mode_flags, run_train

    if "rank" in typed_options(ctx) and init is None:
        raise LowdimError("--rank is the rank of the LoRA trained on top of --init; for a LoRA of rank N from "
                          "scratch use --space lora --set rank=N")
    # token None: run_train's default word, sks, or --init's own, which the initial adapter's frozen part answers to
    config = TrainConfig(
        steps=(defaults.FINETUNE_STEPS if init else defaults.STEPS) if steps is None else steps,
        batch_size=batch_size, grad_accum=grad_accum,
        prompt=prompt, token=token, seed=seed, augment=augment, mixed_precision=mixed_precision,
        gradient_checkpointing=gradient_checkpointing, checkpoint_every=checkpoint_every, cuda_graphs=cuda_graphs)
    job = TrainJob(model=model, images=images or [], subjects=subjects, space=space,
                   space_options=parse_options(set_ or []), layers=layers, full=full,
                   train_text_encoder=train_text_encoder, initial=init, rank=rank,
                   merge_frozen=merge_frozen, dropout=dropout,
                   out=out_dir, resume=resume, overwrite=overwrite, device=device, dtype=dtype,
                   model_config=model_config,
                   learning_rate=lr, config=config, resolution=resolution, save_dtype=save_dtype)
    # a flag its mode does not read, even typed at its default value (--space lidb beside --full)
    check_mode_flags(job, {JOB_FIELDS.get(name, name) for name in typed_options(ctx)})
    with rate_typed(lr is not None):  # a resume's refusal names --lr only when typed, not a rate the mode chose
        result = run_train(job)
    for path in result.outputs:
        out.print(f"wrote {user_text(path, 'bold')}")
    if result.outputs:  # none: --resume found the run already finished, and its warning said so
        start = f" (from step {result.start_step})" if resume else ""
        out.print(f"{counted(len(result.losses), 'step')} in {result.seconds:.1f} s{start}")
        print_next_command(result.outputs, model, model_config)


def print_next_command(outputs: list[Path], model: str, model_config: str | None) -> None:
    """What to run next: personalize's `draw it:` line for the first adapter train wrote (the others are drawn
    alike), or show's `use it:` line for the model folder --full wrote."""
    first = outputs[0]
    if not first.is_file():  # --full: a model folder, drawn as show says
        print_use_line(first)
        return
    from safetensors import safe_open

    from lowdim_cli.personalize_command import draw_command  # it imports this module's options
    from lowdim_sd.adapter_info import learned_phrase

    with safe_open(str(first), framework="pt") as opened:  # the header alone: the phrase it trained on
        metadata = opened.metadata() or {}
    draw = draw_command(model, first, learned_phrase(metadata) + " at night", model_config)
    more = len(outputs) - 1
    others = f"  (the other {counted(more, 'adapter')} alike)" if more else ""
    out.print(f"draw it: {user_text(draw)}{others}")


def print_use_line(path: Path) -> None:
    """The `use it:` line `lowdim show` ends with for ``path``, built as show builds it, if it has one."""
    from lowdim_sd.file_info import describe
    from lowdim_sd.file_info_parts import pasteable

    use = describe(path).use
    if use:
        out.print(f"use it: {user_text(pasteable(use))}")


JOB_FIELDS = {"set_": "space_options", "init": "initial"}  # train's parameters named otherwise in TrainJob


def typed_options(ctx: typer.Context) -> set[str]:
    """The names of the command's parameters typed on the command line, whatever their value."""
    return {param.name for param in ctx.command.params
            if getattr(ctx.get_parameter_source(param.name), "name", None) == "COMMANDLINE"}


def generate(
    model: Model,
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="Prompt (repeatable); [V] is the subject.")],
    adapter: Annotated[list[str] | None, typer.Option(
        "--adapter", "-a", help="Adapter file, optionally with a scale: me.safetensors:0.8 (repeatable).")] = None,
    seed: Annotated[list[int], typer.Option(
        help="Seed (repeatable); one image per prompt and seed.")] = [0],  # noqa: B006  # click copies it per run
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 30,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 5.0,
    negative: Annotated[str, typer.Option(help="Negative prompt.")] = "",
    scheduler: Annotated[str, typer.Option(help="ddim, dpm++, euler, euler-a, pndm or ddpm.")] = "ddim",
    token: Annotated[str | None, typer.Option(help="Identifier for [V] (default: the adapter's own).")] = None,
    text_encoder_scale: Annotated[float, typer.Option(
        help="Multiplies each adapter's scale on the text encoder's layers. 0 keeps the prompt's words as the "
             "base model reads them, so styles survive while the UNet part draws the face; name the face's "
             "looks in the prompt, or most of the likeness goes with the text encoder's part.")] = 1.0,
    adapter_start: Annotated[float, typer.Option(
        help="Fraction of the steps the base UNet draws alone before the adapters' UNet part joins (0 to 1); "
             "the base model lays out the prompt's style first.")] = 0.0,
    adapter_end: Annotated[float, typer.Option(
        help="Fraction of the steps after which the adapters' UNet part leaves and the base UNet finishes "
             "(above --adapter-start, at most 1); 0.8 keeps what the last steps would paint over, such as "
             "a hat over the face's hair.")] = 1.0,
    cross_attention_scale: Annotated[float, typer.Option(
        help="Multiplies each adapter's scale on the UNet's cross-attention layers, which read the prompt: "
             "below 1 the last styles the UNet part still repaints come back, for some of the face.")] = 1.0,
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for the PNGs, grid.png and prompts.json.")] = Path("images"),
    batch: Annotated[int, typer.Option(
        help="Images drawn together in one call: faster, each image the same as drawn alone. A call the GPU "
             "has no memory for is drawn again with half as many.")] = 4,
    resolution: Resolution = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    model_config: ModelConfig = None,
):
    """Generate images with zero or more adapters; writes one PNG per image and a labelled grid.png.

    Also prompts.json: each image's prompt, seed and settings, which makes --out a folder `lowdim eval` scores.

    Example:
    \v\b
      lowdim generate -m tinyfaces -a me/adapter.safetensors -p "a pencil sketch of a [V] face" --seed 1 --seed 2

    Styles the adapter overwrites: add --text-encoder-scale 0 --adapter-start 0.3 --adapter-end 0.8 (docs/cli.md).
    """
    with importing_libraries():
        from lowdim_sd.draw_parts import DrawParts
        from lowdim_sd.generate import GenerateConfig
        from lowdim_sd.generate_job import GenerateJob, generate_to_folder

    config = GenerateConfig(prompts=prompt, seeds=seed or [0], steps=steps, guidance=guidance,
                            negative_prompt=negative, scheduler=scheduler, token=token, resolution=resolution,
                            parts=DrawParts(text_encoder_scale, adapter_start, adapter_end, cross_attention_scale),
                            batch=batch)
    result = generate_to_folder(GenerateJob(model=model, config=config, adapters=adapter or [], out=out_dir,
                                            device=device, dtype=dtype, model_config=model_config))
    paths, grid = result.images, result.grid
    out.print(f"wrote {counted(len(paths), 'image')} and {user_text(grid, 'bold')}")


def export(
    adapter: Annotated[Path, typer.Argument(metavar="ADAPTER", help="A lowdim adapter (.safetensors).")],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="diffusers (peft keys) or kohya (A1111, ComfyUI); a Textual Inversion "
                               "embedding: diffusers or a1111 (A1111, ComfyUI).")] = "diffusers",
    # A str, not a Path: Path drops a trailing slash, and "-o newd/" must be refused as a folder, not written
    # as a file named newd.
    out_path: Annotated[str | None, typer.Option(
        "--out", "-o", metavar="PATH", help="Output file ending in .safetensors (default: "
                                            "NAME.FORMAT.safetensors beside ADAPTER).")] = None,
    # --save-dtype as personalize and train call it; --dtype, its first name, stays for existing scripts
    dtype: Annotated[str, typer.Option(
        "--save-dtype", "--dtype", help="Tensor type in the file: fp16, bf16 or fp32.")] = "fp16",
    overwrite: Annotated[bool, typer.Option("--overwrite", help=(
        "Replace an earlier export at the output (a file whose header says lowdim export wrote it); any other file "
        "there, the source adapter, another adapter or a merged model, is refused."))] = False,
):
    """Export an adapter as a plain LoRA that diffusers, ComfyUI and A1111 load (a stack exports exactly).

    Example: lowdim export me.safetensors --format kohya
    """
    from lowdim_sd.export_job import ExportJob, checked_export

    result = checked_export(ExportJob(adapter=adapter, out=out_path, fmt=fmt, dtype=dtype, overwrite=overwrite))
    through = f" (through the link {user_text(result.link)})" if result.link is not None else ""
    out.print(f"wrote {user_text(result.path, 'bold')}{through}")


def merge(
    model: Model,
    adapter: Annotated[list[str], typer.Option(
        "--adapter", "-a", help="Adapter file, optionally with a scale: me.safetensors:0.8 (repeatable).")],
    out_path: Annotated[Path, typer.Option(
        "--out", "-o", help="A .safetensors file (single-file) or a new folder (diffusers).")],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="single-file (A1111/ComfyUI checkpoint layout) or diffusers (a pipeline folder).")]
    = "single-file",
    overwrite: Annotated[bool, typer.Option("--overwrite",
        help="Replace an earlier merge at --out, whole (nothing else: never the base model or an adapter).")] = False,
    dtype: MergeDtype = "auto",
    model_config: ModelConfig = None,
):
    """Fold adapters into the model's weights and save the whole model: no adapter needed to use it.

    For tools without LoRA support, or to run with zero adapter overhead; `lowdim export` writes a plain LoRA instead.

    Example:
    \v\b
      lowdim merge -m sd15 -a me.safetensors -o me-sd15.safetensors --dtype fp16
    """
    from lowdim_sd.merge_job import MergeJob, merge_adapters

    result = merge_adapters(MergeJob(model=model, adapters=adapter, out=out_path, fmt=fmt, overwrite=overwrite,
                                     dtype=dtype, model_config=model_config))
    out.print(f"wrote {user_text(result.path, 'bold')}")
    if result.tokens:
        names = ", ".join(dict.fromkeys(result.tokens))
        out.print(f"prompts name the subject with its identifier: {user_text(names)} (e.g. "
                  f"'{user_text(result.example)}')")
    print_use_line(result.path)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(generate)
    app.command()(export)
    app.command()(merge)
