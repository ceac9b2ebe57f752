"""Adapter costs side by side for ``lowdim bench speed``: LiDB against LoRA r=1, merged inference against
none, and lowdim's LoRA against peft's on the same layers.

A train step here is the engine's step (``denoising_losses``: VAE encode, text encoder and UNet forward,
backward, per-subject clipping, AdamW) at batch 1, what every training run repeats. Inference is one
UNet forward at batch 2, what each denoising step of a guided generation costs.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch import nn

import lowdim
from lowdim.injection.select import select_layers
from lowdim_sd.bench.speed_measures import LAYERS, PROMPT, SpeedContext
from lowdim_sd.bench.speed_timing import Setup, record, side_by_side, skipped
from lowdim_sd.loading import SDModel

BENCH = "bench"  # the adapter name every variant injects


def engine_step(ctx: SpeedContext, model: SDModel, parameters: list) -> Callable[[], None]:
    """One training step of the engine on ``parameters`` (the model is put in train mode)."""
    from lowdim_sd.train import Subject, TrainConfig, fill_prompt, make_optimizer
    from lowdim_sd.train_loss import clip_per_subject, denoising_losses

    config = TrainConfig(learning_rate=1e-4, seed=0)
    subject = Subject(ctx.reference()[None], 0)
    tokenizer = model.pipe.tokenizer
    ids = tokenizer(fill_prompt(PROMPT, config.token), padding="max_length", truncation=True, return_tensors="pt",
                    max_length=tokenizer.model_max_length).input_ids
    optimizer = make_optimizer(parameters, config)
    holder = SimpleNamespace(parameters=parameters, num_subjects=1)
    counter = itertools.count()
    model.pipe.unet.train()
    model.pipe.text_encoder.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        denoising_losses(model, [subject], config, next(counter), 0, ids).sum().backward()
        if config.max_grad_norm:  # as train's step: None clips nothing
            clip_per_subject(holder, config.max_grad_norm)
        optimizer.step()

    return step


def unet_forward(ctx: SpeedContext, model: SDModel) -> Callable[[], None]:
    """One guided denoising step's UNet call: batch 2 (conditional and unconditional), no grad."""
    unet = model.pipe.unet
    side = ctx.settings.resolution // model.pipe.vae_scale_factor
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, unet.config.in_channels, side, side, generator=generator)
    text = torch.randn(2, model.pipe.tokenizer.model_max_length, unet.config.cross_attention_dim, generator=generator)
    latents, text = (t.to(model.device, model.dtype) for t in (latents, text))
    timesteps = torch.tensor([500, 500], device=model.device)

    def forward() -> None:
        with torch.no_grad():
            unet(latents, timesteps, text)

    return forward


def lowdim_variant(ctx: SpeedContext, space: str, train: bool, merge: bool = False, **options) -> Setup:
    def setup():
        model = ctx.model()
        adapters = lowdim.Adapters(model.modules)
        adapters.add(BENCH, lowdim.get_space(space, **options), LAYERS, seed=0)
        if merge:
            adapters.merge(BENCH)
        call = engine_step(ctx, model, adapters.parameters(BENCH)) if train else unet_forward(ctx, model)
        return call, lambda: _clean(model)

    return setup


def bare_variant(ctx: SpeedContext) -> Setup:
    def setup():
        model = ctx.model()
        return unet_forward(ctx, model), lambda: _clean(model)

    return setup


def peft_variant(ctx: SpeedContext, rank: int, train: bool) -> Setup:
    """peft's LoRA (``inject_adapter_in_model``) on exactly the layers lowdim's adapters take.

    To train, its weights are fp32 on a half-precision model, as diffusers' LoRA scripts make them
    (``cast_training_params``) and as lowdim's always are: AdamW's small updates vanish in fp16 weights.
    For inference they stay in the model's dtype, as a pipeline loads a LoRA.
    """
    def setup():
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig, inject_adapter_in_model

        model = ctx.model()
        names = [name for name, _ in select_layers(model.modules, LAYERS)]
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=names, lora_dropout=0.0)  # scale 1, as lowdim's
        inject_adapter_in_model(config, model.modules, adapter_name=BENCH)
        if train:
            cast_training_params(model.modules, dtype=torch.float32)
        parameters = [p for p in model.modules.parameters() if p.requires_grad]
        call = engine_step(ctx, model, parameters) if train else unet_forward(ctx, model)
        return call, lambda: remove_peft(model, names)

    return setup


def _clean(model: SDModel) -> None:
    lowdim.Adapters(model.modules).remove_all()
    model.pipe.unet.eval()
    model.pipe.text_encoder.eval()


def remove_peft(model: SDModel, names: list[str]) -> None:
    """Put each layer peft wrapped back in its place, so the next variant sees the bare model."""
    unwrap_peft(model.modules, names)
    _clean(model)


def unwrap_peft(root: nn.Module, names: list[str]) -> None:
    """The layers ``names`` under ``root`` as they were before peft wrapped them, and no peft config left
    (else the next injection warns of a second adapter)."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name)
        setattr(parent, child, getattr(parent, child).base_layer)
    vars(root).pop("peft_config", None)


def _compare(ctx: SpeedContext, variants: dict[str, Setup], **detail: object) -> dict:
    samples = side_by_side(variants, ctx.device, ctx.scale.rounds, ctx.settings.repeats, ctx.scale.warmup)
    return {key: record(ctx.label(key), values, **detail) for key, values in samples.items()}


def measure_adapter_step(ctx: SpeedContext) -> dict:
    return _compare(ctx, {"step_lora_r1": lowdim_variant(ctx, "lora", True, rank=1),
                          "step_lidb": lowdim_variant(ctx, "lidb", True)}, layer_set=LAYERS.name)


def measure_adapter_inference(ctx: SpeedContext) -> dict:
    # init="gaussian": a non-zero ΔW, so merging really changes the weights
    return _compare(ctx, {"infer_none": bare_variant(ctx),
                          "infer_lidb_unmerged": lowdim_variant(ctx, "lidb", False, init="gaussian"),
                          "infer_lidb_merged": lowdim_variant(ctx, "lidb", False, merge=True, init="gaussian")},
                    batch=2)


def measure_peer(ctx: SpeedContext, train: bool) -> dict:
    kind = "step" if train else "infer"
    if importlib.util.find_spec("peft") is None:  # peft is only a test dependency of lowdim
        keys = [f"{kind}_{who}_r{rank}" for rank in (1, 4) for who in ("lowdim", "peft")]
        return {key: skipped(ctx.label(key), "peft is not installed (pip install peft)") for key in keys}
    variants = {}
    for rank in (1, 4):
        variants[f"{kind}_lowdim_r{rank}"] = lowdim_variant(ctx, "lora", train, rank=rank)
        variants[f"{kind}_peft_r{rank}"] = peft_variant(ctx, rank, train)
    return _compare(ctx, variants, layer_set=LAYERS.name)
