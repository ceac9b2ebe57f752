"""The losses of phase 1 (eq. 2) and validation: split from ``lowdim_sd.hypertrain`` to keep it short.

``pair_losses`` is one batch's α·D + β·W; ``Diffusion`` is the frozen SD model that D runs through, with
one injected adapter that the predicted tensors override; ``evaluate`` is the held-out validation.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.hypertrain_io import FeatureCache, PairBatch, Pairs
from lowdim_sd.train import Subject, TrainConfig, fill_prompt
from lowdim_sd.train_loss import denoising_losses
from lowdim_sd.weight_dataset import WeightDataset

if TYPE_CHECKING:
    from collections.abc import Sequence

    # the top-level name types as a dummy, not a Module
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    from lowdim.hyper.encoder import ImageEncoder
    from lowdim.hyper.network import HyperNetwork
    from lowdim.spaces.base import LayerSpec
    from lowdim_sd.hypertrain import HyperTrainJob

ADAPTER = "hyper"
VAL_STEP = 10**9  # the "step" validation noise is drawn for: the same every time, so values compare


class Diffusion:
    """The frozen SD model with one injected adapter that predicted tensors override."""

    def __init__(self, job: HyperTrainJob, index: dict, layers: Sequence[LayerSpec], device: torch.device) -> None:
        from lowdim.sizing import layer_specs
        from lowdim_sd.loading import load_sd
        from lowdim_sd.modes import resolve_layers

        self.model = load_sd(cast(str, job.model), str(device), job.dtype, job.model_config)  # set: model_to_train
        layer_set = resolve_layers(index["layer_set"], index["model"])
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
            checkpoint_keeping_predictions(self.model.pipe.unet)

    def loss(self, iterates: list[dict], images: Tensor, seeds: list[int], step: int, augment: bool,
             teacher: dict | None = None) -> Tensor:
        """Mean denoising loss over iterates and samples; iterate k's tensors drive samples k·B .. k·B + B − 1.

        With ``teacher`` (the precomputed θ of the batch), the target is the model's prediction with θ
        on the same noisy latents instead of the noise: θ̂ is judged by what it does, not by its coordinates.
        """
        params = _stacked(iterates)
        images = images.detach().cpu().float()
        subjects = [Subject(images[j: j + 1], seed) for _ in iterates for j, seed in enumerate(seeds)]
        config = dataclasses.replace(self.config, augment=augment)
        predict = None if teacher is None else self._teacher(_stacked([teacher] * len(iterates)))
        with self.adapters.override(ADAPTER, params):
            return denoising_losses(self.model, subjects, config, step, 0, self.input_ids, predict).mean()

    def _teacher(self, params: dict):
        def predict(noisy: Tensor, timesteps: Tensor) -> Tensor:
            pipe = self.model.pipe
            with self.adapters.override(ADAPTER, params):
                hidden = pipe.text_encoder(self.input_ids.repeat(len(noisy), 1).to(noisy.device))[0]
                return pipe.unet(noisy, timesteps, hidden).sample
        return predict


def checkpoint_keeping_predictions(unet: UNet2DConditionModel) -> None:
    """Gradient checkpointing of the UNet whose recomputation keeps the predicted adapter it ran with: the
    backward comes after the prediction's override has ended (``lowdim.injection.checkpointing``)."""
    import inspect

    import diffusers

    from lowdim.injection.checkpointing import checkpointing_with_overrides

    if "gradient_checkpointing_func" not in inspect.signature(unet.enable_gradient_checkpointing).parameters:
        raise LowdimError(f"--gradient-checkpointing in train-hypernet needs diffusers 0.33 or later, which lets it "
                          f"recompute with the predicted weights; this is {diffusers.__version__}")
    unet.train()
    unet.enable_gradient_checkpointing(gradient_checkpointing_func=checkpointing_with_overrides(unet))


def _stacked(iterates: list[dict]) -> dict:
    return {layer: {name: torch.cat([theta[layer][name] for theta in iterates]) for name in tensors}
            for layer, tensors in iterates[0].items()}


def pair_losses(net: torch.nn.Module, diffusion: Diffusion | None, batch: PairBatch, step: int,
                job: HyperTrainJob, *, train: bool, cache: FeatureCache | None = None) -> dict:
    """{'loss', 'weight_loss', 'diffusion_loss', 'per_iterate'} for one batch (tensors with graph).

    'weight_loss' is the trained weight term: ‖θ̂ − θ‖², or with a standardizing network the mean
    squared error in its coordinates z; 'per_iterate' is always the plain ‖θ̂_k − θ‖², so values compare.
    """
    from lowdim.hyper import weight_loss

    images, target, numbers, items = batch
    inner = unwrap(net)
    features = cache.get(head_encoder(inner), images, items) if cache is not None else None
    iterates = net(images, return_all=True, features=features)
    per_iterate = torch.stack([weight_loss(theta, target) for theta in iterates])
    if getattr(inner.config, "standardize", False):
        standardizing = cast("HyperNetwork", inner)  # the transformer head's option
        weight = torch.stack([standardized_loss(standardizing, theta, target) for theta in iterates]).mean()
    else:
        weight = per_iterate.mean()
    losses = {"weight_loss": weight, "per_iterate": per_iterate.detach(), "diffusion_loss": None}
    total = job.beta * weight
    if diffusion is not None:
        chosen = iterates if train and job.diffusion_iterates == "all" else iterates[-1:]
        seeds = [job.seed * 1_000_003 + int(n) for n in numbers]
        teacher = target if job.diffusion_target == "teacher" else None
        denoise = diffusion.loss(chosen, images, seeds, step if train else VAL_STEP, job.augment and train, teacher)
        losses["diffusion_loss"] = denoise
        total = total + job.alpha * denoise
    losses["loss"] = total
    return losses


def extra_loss(net: torch.nn.Module, diffusion: Diffusion, batch: tuple[Tensor, Tensor, Tensor], step: int,
               job: HyperTrainJob, cache: FeatureCache | None = None) -> Tensor:
    """D of the predictions for images without a precomputed θ (``--extra-images``): the noise target."""
    images, numbers, items = batch
    features = cache.get(head_encoder(unwrap(net)), images, items) if cache is not None else None
    iterates = net(images, return_all=True, features=features)
    chosen = iterates if job.diffusion_iterates == "all" else iterates[-1:]
    seeds = [job.seed * 1_000_003 + int(n) for n in numbers]
    return diffusion.loss(chosen, images, seeds, step, job.augment)


def standardized_loss(net: HyperNetwork, predicted: dict, target: dict) -> Tensor:
    """Mean over coordinates (and the batch) of (z_pred − z)²: 1 for the mean prediction of a standardized net."""
    errors = [(p - t).pow(2) for p, t in zip(net.standardized(predicted), net.standardized(target), strict=True)]
    return torch.cat([e.flatten(1) for e in errors], dim=1).mean()


def head_encoder(net: torch.nn.Module) -> ImageEncoder:
    """A head's image encoder: every registered head has one, set as a Module attribute (typed Tensor | Module)."""
    return cast("ImageEncoder", net.encoder)


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The network itself, out of a DistributedDataParallel wrapper if there is one."""
    return getattr(net, "module", net)


@torch.no_grad()
def evaluate(net: torch.nn.Module, diffusion: Diffusion | None, dataset: WeightDataset, job: HyperTrainJob,
             numbers: dict[str, int], cache: FeatureCache | None = None, mean: dict | None = None) -> dict:
    """Validation: weight loss (of θ̂_s, and per iterate) and diffusion loss of θ̂_s, with fixed noise.

    Also the weight loss as a fraction of two constant predictions': zero (``vs_zero``) and, given
    ``mean``, the training targets' mean (``vs_mean``, what a network that ignores the image reaches).
    """
    from lowdim.hyper import weight_loss

    was_training = net.training
    net.eval()
    loader = torch.utils.data.DataLoader(Pairs(dataset, numbers), batch_size=job.batch_size, shuffle=False)
    device = next(net.parameters()).device
    weight, denoise, count, zero, constant = 0.0, 0.0, 0, 0.0, 0.0
    per_iterate: Tensor | None = None
    for images, target, ids, items in loader:
        target = {layer: {k: v.to(device) for k, v in p.items()} for layer, p in target.items()}
        losses = pair_losses(net, diffusion, (images.to(device), target, ids, items), VAL_STEP, job, train=False,
                             cache=cache)
        size = len(images)
        weight += float(losses["per_iterate"][-1]) * size
        per_iterate = losses["per_iterate"] * size + (0 if per_iterate is None else per_iterate)
        zero += float(weight_loss(_zeros_like(target), target)) * size
        if mean is not None:
            constant += float(weight_loss(_broadcast(mean, size, device), target)) * size
        if losses["diffusion_loss"] is not None:
            denoise += float(losses["diffusion_loss"]) * size
        count += size
    net.train(was_training)
    if per_iterate is None:  # no batch ran: the averages below would divide by zero
        raise LowdimError("the validation set holds no identities: nothing to validate on")
    return {"weight_loss": weight / count, "weight_loss_per_iterate": (per_iterate / count).tolist(),
            "weight_loss_vs_zero": weight / max(zero, 1e-30),
            "weight_loss_vs_mean": weight / max(constant, 1e-30) if mean is not None else None,
            "diffusion_loss": denoise / count if diffusion is not None else None, "identities": dataset.names}


def _zeros_like(target: dict) -> dict:
    return {layer: {k: torch.zeros_like(v) for k, v in p.items()} for layer, p in target.items()}


def _broadcast(mean: dict, size: int, device) -> dict:
    return {layer: {k: v.to(device).expand(size, *v.shape) for k, v in p.items()} for layer, p in mean.items()}
