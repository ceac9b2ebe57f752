"""Phase 1 of HyperDreamBooth (§4.2): train a hypernetwork on (image, precomputed θ) pairs.

    L = α · mean_k D(θ̂_k) + β · mean_k ‖θ̂_k − θ‖²          (eq. 2, every iterate k = 1..s supervised)

D is the denoising loss of the frozen SD model with the predicted adapter: ONE adapter of the space
is injected with ``batch=None`` and the model runs under ``Adapters.override`` with the predicted
(B, ...) tensors, so sample j uses identity j's prediction. All iterates go through the UNet in one
batch of s·B samples. ‖·‖² is ``lowdim.hyper.weight_loss`` (summed over params, mean over the batch).

Runs through HF accelerate: the same code on one CPU, or under ``accelerate launch`` on many GPUs.
Data order, noise and timesteps are functions of (seed, step), so a resumed run repeats exactly what
an uninterrupted one would do.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim_sd import checkpoints, defaults, runs
from lowdim_sd.feature_file import StoredFeatures
from lowdim_sd.hypertrain_io import (
    FeatureCache,
    Images,
    MetricsLog,
    Pairs,
    StepSampler,
    all_targets,
    split_identities,
    trim_metrics,
)
from lowdim_sd.hypertrain_losses import Diffusion, evaluate, extra_loss, pair_losses, unwrap
from lowdim_sd.loading import accelerator_available, canonical_model
from lowdim_sd.optim import one_kernel_update
from lowdim_sd.retrieval_fill import check_retrieval_job, fill_retrieval
from lowdim_sd.train import TrainingDiverged
from lowdim_sd.weight_dataset import Folders, WeightDataset, as_folders

TINY_ENCODER = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 64}


@dataclass
class HyperTrainJob:
    """Everything ``lowdim train-hypernet`` needs; one field per CLI option."""

    weights: Folders  # a `lowdim precompute` folder, or several made alike
    model: str | None = None  # default: the model the weights were made with
    out: Path = Path("hypernet")
    hyper: dict = field(default_factory=dict)  # HyperConfig options: encoder, encoder_config, width, iterations...
    steps: int = defaults.HYPERNET_STEPS
    max_minutes: float | None = None  # stop early (and save as usual) once training has run this long
    batch_size: int = 4  # per process
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    alpha: float = 1.0  # diffusion term
    beta: float = 1.0  # weight term
    diffusion_iterates: str = "all"  # "all": D on every θ̂_k; "last": on θ̂_s only (s times cheaper)
    # "noise": D regresses the noise (eq. 2); "teacher": the model's own prediction with the target θ
    diffusion_target: str = "noise"
    # Folders of identities without a precomputed θ: each step adds extra_batch_size of them to D only
    extra_images: list[Path] = field(default_factory=list)
    extra_batch_size: int | None = None  # default: batch_size
    # A frozen encoder's features, precomputed (`lowdim encoder-features`): its package need not be here
    features: Path | None = None
    # Retrieval head with key_dim: photos of the same people (one sub-folder each) to learn its keys from
    key_pairs: Path | None = None
    key_steps: int = 750
    key_renders: int = 0  # retrieval head: also key each stored θ by this many images the model makes with it
    val_fraction: float = 0.0
    val_identities: int | None = None  # overrides val_fraction
    val_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    seed: int = 0
    augment: bool = True
    all_images: bool = False  # one pair per image instead of per identity (first image)
    prompt: str | None = None  # default: the precompute prompt
    token: str | None = None
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    num_workers: int = 0
    cpu: bool = False
    dtype: str = "auto"
    model_config: str | None = None


@dataclass
class HyperTrainResult:
    path: Path
    start_step: int = 0
    losses: list[float] = field(default_factory=list)
    train_names: list[str] = field(default_factory=list)
    val_names: list[str] = field(default_factory=list)
    metrics: Path | None = None
    seconds: float = 0.0
    main_process: bool = True  # False in the other processes of a distributed run


# ---------------------------------------------------------------------------------------- data


# -------------------------------------------------------------------------------------- losses


# ---------------------------------------------------------------------------------------- run


def check_counts(job: HyperTrainJob) -> None:
    """Counts and rates that must be positive, named as the CLI spells them."""
    positive = {"--steps": job.steps, "--batch-size": job.batch_size, "--lr": job.learning_rate,
                "keep_checkpoints": job.keep_checkpoints}
    at_least_zero = {"--val-every": job.val_every, "--log-every": job.log_every,  # 0: never
                     "--checkpoint-every": job.checkpoint_every, "--weight-decay": job.weight_decay,
                     "--num-workers": job.num_workers}
    for name, value in positive.items():
        if not value > 0:
            raise LowdimError(f"{name} must be > 0, got {value}")
    for name, value in at_least_zero.items():
        if not value >= 0:
            raise LowdimError(f"{name} must be >= 0, got {value}")


def check_job(job: HyperTrainJob) -> None:
    """Settings nothing can train with, refused before any model or data loads."""
    check_retrieval_job(job)
    retrieval = job.hyper.get("architecture") == "retrieval"  # its encoder is always frozen
    if job.features is not None and not (job.hyper.get("freeze_encoder") or retrieval):
        raise LowdimError("--features stand in for a frozen encoder: add --freeze-encoder")
    if job.extra_images and job.alpha <= 0:
        raise LowdimError("--extra-images have no precomputed weights: they need the diffusion term (--alpha > 0)")
    if job.alpha < 0 or job.beta < 0 or job.alpha == job.beta == 0:
        raise LowdimError("--alpha and --beta must be >= 0 and not both 0 (eq. 2 would have no loss)")
    check_counts(job)
    if job.diffusion_iterates not in ("all", "last"):
        raise LowdimError(f"--diffusion-iterates must be all or last, got '{job.diffusion_iterates}'")
    if job.diffusion_target not in ("noise", "teacher"):
        raise LowdimError(f"--diffusion-target must be noise or teacher, got '{job.diffusion_target}'")


@runs.one_run_per_folder(lambda job: job.out, check=check_job)
def train_hypernet(job: HyperTrainJob, progress: bool = True) -> HyperTrainResult:
    """Train (or, with ``resume``, continue) a hypernetwork; returns where the final checkpoint is."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    from lowdim.hyper import HyperConfig, build_hypernet

    full = WeightDataset(job.weights)
    index = full.index
    job.model = canonical_model(job.model or index["model"])
    if job.model != canonical_model(index["model"]):
        warnings.warn(f"the weights were made with {index['model']}; training for {job.model}", stacklevel=2)
    numbers = {name: number for number, name in enumerate(full.names)}
    out = Path(job.out)
    folder = checkpoints.latest(out)
    if folder is not None and not job.resume:
        raise LowdimError(f"{out} holds checkpoints of an earlier run (latest {folder.name}); pass --resume to "
                          f"continue it, or choose another --out")
    if folder is None and (out / "hypernet.safetensors").is_file():
        # A finished run without periodic checkpoints: starting over would overwrite it, resuming would too.
        raise LowdimError(f"{out} holds a finished hypernetwork and no checkpoint to resume from; choose another "
                          f"--out (or save checkpoints with --checkpoint-every to continue runs later)")
    train_names, val_names = split_identities(full.names, job, out)
    try:
        # Encoders carry parts the hypernetwork never uses (e.g. ViT's pooler): DDP must not wait for their grads.
        unused = DistributedDataParallelKwargs(find_unused_parameters=True)
        cpu = job.cpu or not accelerator_available()  # else accelerate stays single-process on CPU machines
        accelerator = Accelerator(mixed_precision=job.mixed_precision, cpu=cpu, kwargs_handlers=[unused])
    except ValueError as error:  # accelerate's state is per process: one setting for the process's lifetime
        raise LowdimError(f"accelerate: {error}") from None
    train_set = full.subset(train_names, all_images=job.all_images)
    val_set = full.subset(val_names) if val_names else None
    if job.hyper.get("architecture") == "retrieval":
        return fill_retrieval(job, train_set, val_set, numbers, out, progress)

    if folder is not None:
        from lowdim.hyper import load_hypernet

        with encoder_weights_context(job):
            net = load_hypernet(folder / "hypernet.safetensors", space=full.space, layers=full.layers)
        start = checkpoints.saved_step(folder)
    else:
        torch.manual_seed(job.seed)
        config = HyperConfig.from_dict(job.hyper)
        try:
            with encoder_weights_context(job):
                net = build_hypernet(config, full.space, full.layers)
        except OSError:
            raise LowdimError(f"could not load the image encoder '{config.encoder}' (offline, or not a vision "
                              f"model?); pass a local folder, or --encoder-config for a random one") from None
        start = 0
    standardize = folder is None and bool(getattr(net.config, "standardize", False))
    targets = all_targets(train_set) if standardize or val_set is not None else None
    if standardize:
        net.set_target_statistics(targets)
    mean = {layer: {k: v.mean(0) for k, v in p.items()} for layer, p in targets.items()} if targets else None
    frozen = bool(getattr(net.config, "freeze_encoder", False))
    stored = StoredFeatures(job.features, unwrap(net).encoder) if job.features is not None else None
    train_cache, val_cache = (FeatureCache(stored), FeatureCache(stored)) if frozen else (None, None)
    net.to(accelerator.device).train()
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=job.learning_rate, weight_decay=job.weight_decay,
                                  fused=one_kernel_update(trainable))
    if folder is not None:
        checkpoints.load_optimizer(optimizer, trainable, folder / "optimizer.safetensors")
    diffusion = Diffusion(job, index, full.layers, accelerator.device) if job.alpha > 0 else None
    sampler = StepSampler(len(train_set), job.batch_size * accelerator.num_processes, job.seed, start, job.steps)
    loader = torch.utils.data.DataLoader(Pairs(train_set, numbers), batch_size=job.batch_size, sampler=sampler,
                                         num_workers=job.num_workers)
    extra = extra_images_loader(job, train_set, start, accelerator.num_processes)
    net, optimizer, loader = accelerator.prepare(net, optimizer, loader)
    extras = iter(accelerator.prepare(extra)) if extra is not None else None
    extra_cache = FeatureCache(stored) if frozen and extras is not None else None

    result = HyperTrainResult(out / "hypernet.safetensors", start, train_names=train_names, val_names=val_names,
                              metrics=out / "metrics.jsonl")
    metadata = {"model": job.model, "layer_set": index["layer_set"], "alpha": job.alpha, "beta": job.beta,
                "adapter_seed": int(index["seed"]), "weights": ", ".join(map(str, as_folders(job.weights)))}
    main = result.main_process = accelerator.is_main_process
    if main:
        trim_metrics(result.metrics, start if job.resume else -1)
    log = MetricsLog(result.metrics, main)

    def validate() -> dict:
        return evaluate(unwrap(net), diffusion, val_set, job, numbers, val_cache, mean)

    started = time.perf_counter()
    step, updating = start, False
    def checkpoint() -> Path:
        return checkpoints.save_hypernet(out, step, accelerator.unwrap_model(net), optimizer, trainable, metadata,
                                         job.keep_checkpoints)

    with runs.progress(job.steps, start=start, enabled=progress and main) as advance:
        if val_set is not None and job.val_every and start == 0:
            if main:
                log.write({"step": 0, "split": "val", **validate()})
            accelerator.wait_for_everyone()
        try:
            for batch in loader:
                optimizer.zero_grad(set_to_none=True)
                with accelerator.autocast():
                    losses = pair_losses(net, diffusion, batch, step, job, train=True, cache=train_cache)
                    if extras is not None:
                        losses["loss"] = losses["loss"] + job.alpha * extra_loss(net, diffusion, next(extras), step,
                                                                                job, extra_cache)
                loss = losses["loss"]
                if not torch.isfinite(loss.detach()):
                    raise TrainingDiverged(f"loss became {float(loss)} at step {step + 1}; try a lower --lr")
                accelerator.backward(loss)
                if job.max_grad_norm:
                    accelerator.clip_grad_norm_(trainable, job.max_grad_norm)
                updating = True  # a stop from here on may leave the update half applied, or the step uncounted
                optimizer.step()
                step += 1
                updating = False
                value, weight, denoise = (_mean(accelerator, losses[key]) for key in ("loss", "weight_loss",
                                                                                      "diffusion_loss"))
                result.losses.append(value)
                advance(value)
                if job.log_every and step % job.log_every == 0:
                    log.write({"step": step, "split": "train", "loss": value, "weight_loss": weight,
                               "weight_loss_per_iterate": losses["per_iterate"].tolist(), "diffusion_loss": denoise,
                               "time": time.time()})
                if val_set is not None and job.val_every and (step % job.val_every == 0 or step == job.steps):
                    if main:
                        log.write({"step": step, "split": "val", **validate()})
                    accelerator.wait_for_everyone()
                if job.checkpoint_every and step % job.checkpoint_every == 0 and main:
                    checkpoint()
                if out_of_time(accelerator, started, job.max_minutes):
                    if val_set is not None and job.val_every and step % job.val_every:
                        if main:  # the stopping step gets its validation, as the last step would
                            log.write({"step": step, "split": "val", **validate()})
                        accelerator.wait_for_everyone()
                    break
        except (KeyboardInterrupt, torch.OutOfMemoryError) as stop:
            # Only the main process writes; the others stop with the same words.
            save = checkpoint if main else (lambda: out / checkpoints.FOLDER / f"step-{step:06d}")
            runs.reraise(stop, runs.stop_note(stop, step, updating, save, last=checkpoints.latest(out)))
    accelerator.wait_for_everyone()
    if main:
        from lowdim.hyper import save_hypernet

        save_hypernet(result.path, accelerator.unwrap_model(net), {**metadata, "steps": step})
    result.seconds = time.perf_counter() - started
    return result


def encoder_weights_context(job: HyperTrainJob):
    """With --features, a packaged frozen encoder is built without its package (its weights never run);
    not with --key-renders, whose images the model makes on the spot and the backbone must see."""
    from lowdim.hyper.encoder import packaged_weights_unused

    shapes_only = job.features is not None and not job.key_renders
    return packaged_weights_unused() if shapes_only else contextlib.nullcontext()


def extra_images_loader(job: HyperTrainJob, like: WeightDataset, start: int, processes: int):
    """Batches of ``--extra-images`` in their own seeded order (resumes like the pairs), or None."""
    if not job.extra_images:
        return None
    images = Images([Path(folder) for folder in job.extra_images], like)
    size = job.extra_batch_size or job.batch_size
    sampler = StepSampler(len(images), size * processes, job.seed + 1, start, job.steps)
    return torch.utils.data.DataLoader(images, batch_size=size, sampler=sampler, num_workers=job.num_workers)


def out_of_time(accelerator, started: float, max_minutes: float | None) -> bool:
    """Whether the time budget is spent; every process agrees, so none waits for the others forever."""
    if max_minutes is None:
        return False
    late = torch.tensor(float(time.perf_counter() - started > 60 * max_minutes), device=accelerator.device)
    return float(accelerator.reduce(late, reduction="max")) > 0


def _mean(accelerator, value: Tensor | None) -> float | None:
    """The mean over processes of a loss (every process calls this, in the same order)."""
    return None if value is None else float(accelerator.reduce(value.detach(), reduction="mean"))
