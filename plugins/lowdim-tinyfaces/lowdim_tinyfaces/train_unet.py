"""Stage 2 (UNet + text encoder on scaled VAE latents) and the diffusers export."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .grid import save_grid
from .identity import CARDINALITIES
from .styles import STYLES
from .train_config import (
    TrainConfig,
    build_sample_scheduler,
    build_train_scheduler,
    training_prompts,
    write_bpe_files,
)
from .train_loop import StagePlan, run_stage
from .train_state import EMA
from .train_steps import (
    EVAL_STREAM,
    UNET_STAGE,
    batch_captions,
    diffusion_loss,
    sample_batch,
    sample_latents,
    to_uint8,
    torch_gen,
)
from .world import render_tensor

GRID_SEEDS = 6  # columns of the sample grids


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    # Padded to model_max_length exactly as StableDiffusionPipeline does at inference.
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def real_grid(cfg: TrainConfig) -> np.ndarray:
    """Rows = styles, columns = random identities: what the samples should look like."""
    rows = []
    for s in range(len(STYLES)):
        rng = np.random.default_rng([cfg.seed, EVAL_STREAM, 7, s])
        levels = rng.integers(0, CARDINALITIES, size=(GRID_SEEDS, len(CARDINALITIES)))
        rows.append(render_tensor(levels, s, rng.integers(0, 2**62, GRID_SEEDS), cfg.image_size))
    return to_uint8(torch.cat(rows))


@torch.no_grad()
def sample_grid(unet: nn.Module, text_encoder: nn.Module, tokenizer, vae, steps: int = 25,
                guidance: float = 4.0) -> np.ndarray:
    """Rows = styles, columns = fixed noise seeds (the same seeds in every row)."""
    unet.eval()
    text_encoder.eval()
    cond = tokenize(tokenizer, [p for p in training_prompts() for _ in range(GRID_SEEDS)])
    uncond = tokenize(tokenizer, [""])
    out = []
    for p in range(len(STYLES)):
        # Re-seeded per row so each column starts from the same noise in every style.
        g = torch.Generator().manual_seed(1234)
        rows = cond[p * GRID_SEEDS:(p + 1) * GRID_SEEDS]
        lat = sample_latents(unet, text_encoder, rows, uncond, build_sample_scheduler(), g,
                             steps, guidance)
        out.append(vae.decode(lat.to(vae.device) / vae.config.scaling_factor).sample)
    return to_uint8(torch.cat(out))


def style_prompts(cfg: TrainConfig, table: torch.Tensor, style_ids: np.ndarray,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids of every style prompt, each sample's row): its style's, or the empty last row when dropped."""
    idx = torch.from_numpy(style_ids)
    drop = torch.rand(len(idx), generator=gen) < cfg.prompt_dropout
    return table, torch.where(drop, torch.full_like(idx, len(table) - 1), idx)


def attribute_prompts(cfg: TrainConfig, tokenizer: Any, step: int, levels: np.ndarray,
                      style_ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids of the batch's distinct captions, each sample's row): captions naming looks and style."""
    captions = batch_captions(cfg.seed, UNET_STAGE, step, levels, style_ids, cfg.prompt_dropout)
    distinct, index = np.unique(np.array(captions), return_inverse=True)
    return tokenize(tokenizer, list(distinct)), torch.from_numpy(index.reshape(-1))


def train_unet(cfg: TrainConfig, out: Path, plan: StagePlan, log, resume: bool, vae, unet: nn.Module,
               text_encoder: nn.Module, tokenizer, device: str = "cpu") -> tuple[nn.Module, nn.Module, bool]:
    """Stage 2 on ``device``: the EMA weights, and whether the stage finished (not paused at a deadline).

    The batches are rendered, and every random draw made, on the CPU either way."""
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    tparams = sum(p.numel() for p in text_encoder.parameters()) / 1e6
    log(f"UNet params {params:.2f}M, text encoder {tparams:.2f}M, on {device}")
    vae, unet, text_encoder = vae.to(device), unet.to(device), text_encoder.to(device)
    save_grid(out / "samples" / "real.png", real_grid(cfg), ncol=GRID_SEEDS, upscale=3)
    modules = {"unet": unet, "text_encoder": text_encoder}
    opt = torch.optim.AdamW([p for m in modules.values() for p in m.parameters()],
                            lr=cfg.unet_lr, weight_decay=1e-2)
    ema = EMA(modules, cfg.ema_decay)
    step_fn = unet_step(cfg, vae, unet, text_encoder, tokenizer, opt, device)

    def on_sample(step: int) -> None:
        u, t = ema_copies(ema, unet, text_encoder)
        save_grid(out / "samples" / f"unet_{step:06d}.png", sample_grid(u, t, tokenizer, vae),
                  ncol=GRID_SEEDS, upscale=3)

    state = run_stage("unet", out, plan, modules, opt, cfg.unet_lr, step_fn, cfg, log, resume,
                      ema=ema, on_sample=on_sample)
    u, t = ema_copies(ema, unet, text_encoder)
    return u.eval(), t.eval(), state["done"]


def unet_step(cfg: TrainConfig, vae, unet: nn.Module, text_encoder: nn.Module, tokenizer: Any,
              opt: torch.optim.Optimizer, device: str) -> Callable[[int], dict[str, float]]:
    """Stage 2's step: render batch ``step``, encode it, and take one optimizer step on its diffusion loss."""
    scheduler = build_train_scheduler()
    style_ids_table = tokenize(tokenizer, training_prompts() + [""])  # last row: the empty prompt, for guidance
    sf = vae.config.scaling_factor

    def step_fn(step: int) -> dict[str, float]:
        unet.train()
        text_encoder.train()
        levels, style_ids, seeds = sample_batch(cfg.seed, UNET_STAGE, step, cfg.unet_batch)
        images = render_tensor(levels, [int(s) for s in style_ids], seeds, cfg.image_size).to(device)
        gen = torch_gen(cfg.seed, UNET_STAGE, step)
        with torch.no_grad():
            latents = vae.encode(images).latent_dist.sample(generator=gen) * sf
        if cfg.captions == "attributes":
            ids, idx = attribute_prompts(cfg, tokenizer, step, levels, style_ids)
        else:
            ids, idx = style_prompts(cfg, style_ids_table, style_ids, gen)
        loss = diffusion_loss(unet, text_encoder, latents, ids, idx, scheduler, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        return {"loss": loss.item()}

    return step_fn


def ema_copies(ema: EMA, unet: nn.Module, text_encoder: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Copies of the UNet and text encoder holding the EMA weights; the trained modules stay as they are."""
    u, t = copy.deepcopy(unet), copy.deepcopy(text_encoder)
    ema.copy_to({"unet": u, "text_encoder": t})
    return u, t


def export_pipeline(model_dir: Path, vae, unet, text_encoder, tokenizer, out: Path, log) -> None:
    """Save an fp16 StableDiffusionPipeline folder, reload it in fp32 and sample a grid."""
    from diffusers import StableDiffusionPipeline

    from lowdim_sd.loading import dtype_keyword
    from lowdim_sd.text_encoder_files import save_pipeline

    if model_dir.exists():
        shutil.rmtree(model_dir)
    pipe = StableDiffusionPipeline(
        vae=copy.deepcopy(vae).cpu().half(), text_encoder=copy.deepcopy(text_encoder).cpu().half(),
        tokenizer=tokenizer, unet=copy.deepcopy(unet).cpu().half(), scheduler=build_sample_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    save_pipeline(pipe, model_dir)  # its text encoder in the layout every transformers reads
    write_bpe_files(model_dir / "tokenizer")  # so transformers 4 can load the folder too
    size = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()) / 2**20
    log(f"exported {model_dir} ({size:.1f} MiB)")
    # Verify through the public loader, as users will load it.
    # Loaded as fp32, not cast after: diffusers warns that a cast may break modules kept in fp32.
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, use_safetensors=True, **{dtype_keyword(): torch.float32})
    pipe.set_progress_bar_config(disable=True)
    images = []
    for prompt in training_prompts():
        g = torch.Generator().manual_seed(1234)
        res = pipe([prompt] * GRID_SEEDS, num_inference_steps=25, guidance_scale=4.0,
                   generator=g, output_type="np")
        images.append(res.images)
    grid = (np.concatenate(images) * 255).round().astype(np.uint8)
    assert grid.shape[1:] == (32, 32, 3), grid.shape
    save_grid(out / "samples" / "final_pipeline.png", grid, ncol=GRID_SEEDS, upscale=3)
    log(f"reloaded pipeline OK; final grid {out / 'samples' / 'final_pipeline.png'}")
