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

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd import checkpoints
from lowdim_sd.hypertrain_io import (
    MetricsLog,
    Pairs,
    StepSampler,
    load_optimizer,
    save_checkpoint,
    split_identities,
    trim_metrics,
)
from lowdim_sd.loading import accelerator_available, canonical_model
from lowdim_sd.train import Subject, TrainConfig, TrainingDiverged, denoising_losses, fill_prompt
from lowdim_sd.weight_dataset import Folders, WeightDataset, as_folders

ADAPTER = "hyper"
VAL_STEP = 10**9  # the "step" validation noise is drawn for: the same every time, so values compare
TINY_ENCODER = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 64}


@dataclass
class HyperTrainJob:
    """Everything ``lowdim train-hypernet`` needs; one field per CLI option."""

    weights: Folders  # a `lowdim precompute` folder, or several made alike
    model: str | None = None  # default: the model the weights were made with
    out: Path = Path("hypernet")
    hyper: dict = field(default_factory=dict)  # HyperConfig options: encoder, encoder_config, width, iterations...
    steps: int = 1000
    max_minutes: float | None = None  # stop early (and save as usual) once training has run this long
    batch_size: int = 4  # per process
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    alpha: float = 1.0  # diffusion term
    beta: float = 1.0  # weight term
    diffusion_iterates: str = "all"  # "all": D on every θ̂_k; "last": on θ̂_s only (s times cheaper)
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


class Diffusion:
    """The frozen SD model with one injected adapter that predicted tensors override."""

    def __init__(self, job: HyperTrainJob, index: dict, layers, device: torch.device) -> None:
        from lowdim.sizing import layer_specs
        from lowdim_sd.loading import load_sd
        from lowdim_sd.modes import resolve_layers

        self.model = load_sd(job.model, str(device), job.dtype, job.model_config)
        layer_set = resolve_layers(index["layer_set"])
        if layer_specs(self.model.modules, layer_set) != list(layers):
            raise LowdimError(f"{job.model}: its {layer_set.name} layers differ from those the weights in "
                              f"{job.weights} were made for ({index['model']})")
        space = lowdim.get_space(index["space"], index["space_config"])
        self.adapters = lowdim.Adapters(self.model.modules)
        self.adapters.add(ADAPTER, space, layer_set, seed=int(index["seed"]), batch=None)
        for param in self.adapters.parameters(ADAPTER):
            param.requires_grad_(False)
        config = index["config"]
        self.config = TrainConfig(batch_size=1, seed=job.seed, augment=job.augment,
                                  prompt=job.prompt or config["prompt"], token=job.token or config["token"])
        tokenizer = self.model.pipe.tokenizer
        prompt = fill_prompt(self.config.prompt, self.config.token)
        self.input_ids = tokenizer(prompt, padding="max_length", truncation=True,
                                   max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        if job.gradient_checkpointing:
            self.model.pipe.unet.train()
            self.model.pipe.unet.enable_gradient_checkpointing()

    def loss(self, iterates: list[dict], images: Tensor, seeds: list[int], step: int, augment: bool) -> Tensor:
        """Mean denoising loss over iterates and samples; iterate k's tensors drive samples k·B .. k·B + B − 1."""
        params = {layer: {name: torch.cat([theta[layer][name] for theta in iterates]) for name in tensors}
                  for layer, tensors in iterates[0].items()}
        images = images.detach().cpu().float()
        subjects = [Subject(images[j: j + 1], seed) for _ in iterates for j, seed in enumerate(seeds)]
        config = dataclasses.replace(self.config, augment=augment)
        with self.adapters.override(ADAPTER, params):
            return denoising_losses(self.model, subjects, config, step, 0, self.input_ids).mean()


def encoder_input(net, images: Tensor) -> Tensor:
    """The images at the encoder's input size ([-1, 1], as ``lowdim personalize`` feeds them)."""
    size = int(getattr(net.encoder.backbone.config, "image_size", images.shape[-1]))
    if images.shape[-1] == size:
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)


def pair_losses(net, diffusion: Diffusion | None, batch, step: int, job: HyperTrainJob, *, train: bool) -> dict:
    """{'loss', 'weight_loss', 'diffusion_loss', 'per_iterate'} for one batch (tensors with graph)."""
    from lowdim.hyper import weight_loss

    images, target, numbers = batch
    iterates = net(encoder_input(_unwrap(net), images), return_all=True)
    per_iterate = torch.stack([weight_loss(theta, target) for theta in iterates])
    weight = per_iterate.mean()
    losses = {"weight_loss": weight, "per_iterate": per_iterate.detach(), "diffusion_loss": None}
    total = job.beta * weight
    if diffusion is not None:
        chosen = iterates if train and job.diffusion_iterates == "all" else iterates[-1:]
        seeds = [job.seed * 1_000_003 + int(n) for n in numbers]
        denoise = diffusion.loss(chosen, images, seeds, step if train else VAL_STEP, job.augment and train)
        losses["diffusion_loss"] = denoise
        total = total + job.alpha * denoise
    losses["loss"] = total
    return losses


def _unwrap(net):
    return getattr(net, "module", net)


@torch.no_grad()
def evaluate(net, diffusion: Diffusion | None, dataset: WeightDataset, job: HyperTrainJob,
             numbers: dict[str, int]) -> dict:
    """Validation: weight loss (of θ̂_s, and per iterate) and diffusion loss of θ̂_s, with fixed noise."""
    was_training = net.training
    net.eval()
    loader = torch.utils.data.DataLoader(Pairs(dataset, numbers), batch_size=job.batch_size, shuffle=False)
    device = next(net.parameters()).device
    weight, per_iterate, denoise, count = 0.0, None, 0.0, 0
    for images, target, ids in loader:
        target = {layer: {k: v.to(device) for k, v in p.items()} for layer, p in target.items()}
        losses = pair_losses(net, diffusion, (images.to(device), target, ids), VAL_STEP, job, train=False)
        size = len(images)
        weight += float(losses["per_iterate"][-1]) * size
        per_iterate = losses["per_iterate"] * size + (0 if per_iterate is None else per_iterate)
        if losses["diffusion_loss"] is not None:
            denoise += float(losses["diffusion_loss"]) * size
        count += size
    net.train(was_training)
    return {"weight_loss": weight / count, "weight_loss_per_iterate": (per_iterate / count).tolist(),
            "diffusion_loss": denoise / count if diffusion is not None else None, "identities": dataset.names}


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


def train_hypernet(job: HyperTrainJob, progress: bool = True) -> HyperTrainResult:
    """Train (or, with ``resume``, continue) a hypernetwork; returns where the final checkpoint is."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    from lowdim.hyper import HyperConfig, build_hypernet

    if job.alpha < 0 or job.beta < 0 or job.alpha == job.beta == 0:
        raise LowdimError("--alpha and --beta must be >= 0 and not both 0 (eq. 2 would have no loss)")
    check_counts(job)
    if job.diffusion_iterates not in ("all", "last"):
        raise LowdimError(f"--diffusion-iterates must be all or last, got '{job.diffusion_iterates}'")
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

    if folder is not None:
        from lowdim.hyper import load_hypernet

        net = load_hypernet(folder / "hypernet.safetensors", space=full.space, layers=full.layers)
        start = int(json.loads((folder / "state.json").read_text())["step"])
    else:
        torch.manual_seed(job.seed)
        config = HyperConfig.from_dict(job.hyper)
        try:
            net = build_hypernet(config, full.space, full.layers)
        except OSError:
            raise LowdimError(f"could not load the image encoder '{config.encoder}' (offline, or not a vision "
                              f"model?); pass a local folder, or --encoder-config for a random one") from None
        start = 0
    net.to(accelerator.device).train()
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=job.learning_rate, weight_decay=job.weight_decay)
    if folder is not None:
        load_optimizer(optimizer, trainable, folder / "optimizer.safetensors")
    diffusion = Diffusion(job, index, full.layers, accelerator.device) if job.alpha > 0 else None
    sampler = StepSampler(len(train_set), job.batch_size * accelerator.num_processes, job.seed, start, job.steps)
    loader = torch.utils.data.DataLoader(Pairs(train_set, numbers), batch_size=job.batch_size, sampler=sampler,
                                         num_workers=job.num_workers)
    net, optimizer, loader = accelerator.prepare(net, optimizer, loader)

    result = HyperTrainResult(out / "hypernet.safetensors", start, train_names=train_names, val_names=val_names,
                              metrics=out / "metrics.jsonl")
    metadata = {"model": job.model, "layer_set": index["layer_set"], "alpha": job.alpha, "beta": job.beta,
                "adapter_seed": int(index["seed"]), "weights": ", ".join(map(str, as_folders(job.weights)))}
    main = result.main_process = accelerator.is_main_process
    if main:
        trim_metrics(result.metrics, start if job.resume else -1)
    log = MetricsLog(result.metrics, main)
    started = time.perf_counter()
    step, updating = start, False
    with checkpoints.progress_bar(job.steps, start, enabled=progress and main) as advance:
        if val_set is not None and job.val_every and start == 0:
            if main:
                log.write({"step": 0, "split": "val", **evaluate(_unwrap(net), diffusion, val_set, job, numbers)})
            accelerator.wait_for_everyone()
        try:
            for batch in loader:
                optimizer.zero_grad(set_to_none=True)
                with accelerator.autocast():
                    losses = pair_losses(net, diffusion, batch, step, job, train=True)
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
                        log.write({"step": step, "split": "val", **evaluate(_unwrap(net), diffusion, val_set, job,
                                                                           numbers)})
                    accelerator.wait_for_everyone()
                if job.checkpoint_every and step % job.checkpoint_every == 0 and main:
                    save_checkpoint(out, step, accelerator.unwrap_model(net), optimizer, trainable, metadata,
                                     job.keep_checkpoints)
                if out_of_time(accelerator, started, job.max_minutes):
                    if val_set is not None and job.val_every and step % job.val_every:
                        if main:  # the stopping step gets its validation, as the last step would
                            log.write({"step": step, "split": "val", **evaluate(_unwrap(net), diffusion, val_set,
                                                                               job, numbers)})
                        accelerator.wait_for_everyone()
                    break
        except KeyboardInterrupt:
            if main and not updating:
                path = save_checkpoint(out, step, accelerator.unwrap_model(net), optimizer, trainable, metadata,
                                       job.keep_checkpoints)
                warnings.warn(f"interrupted at step {step}; checkpoint saved to {path}; continue with --resume",
                              stacklevel=2)
            elif main:
                warnings.warn(f"interrupted inside the optimizer update of step {step + 1}, so no checkpoint of it "
                              f"was saved; --resume continues from the last periodic one", stacklevel=2)
            raise
    accelerator.wait_for_everyone()
    if main:
        from lowdim.hyper import save_hypernet

        save_hypernet(result.path, accelerator.unwrap_model(net), {**metadata, "steps": step})
    result.seconds = time.perf_counter() - started
    return result


def out_of_time(accelerator, started: float, max_minutes: float | None) -> bool:
    """Whether the time budget is spent; every process agrees, so none waits for the others forever."""
    if max_minutes is None:
        return False
    late = torch.tensor(float(time.perf_counter() - started > 60 * max_minutes), device=accelerator.device)
    return float(accelerator.reduce(late, reduction="max")) > 0


def _mean(accelerator, value: Tensor | None) -> float | None:
    """The mean over processes of a loss (every process calls this, in the same order)."""
    return None if value is None else float(accelerator.reduce(value.detach(), reduction="mean"))
