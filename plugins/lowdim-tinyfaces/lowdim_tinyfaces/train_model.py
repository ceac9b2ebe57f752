"""Train the TinyFaces text-to-image model from scratch on CPU and export a diffusers folder.

    python -m lowdim_tinyfaces.train_model --out runs/tinyfaces --budget-minutes 90 [--resume]

Stage 1 trains the VAE, then its latent std sets ``scaling_factor``; stage 2
trains the UNet jointly with a small CLIP text encoder. Both stages stop on a
wall-clock budget (their learning rates anneal over that budget, so the end of
a run is always the low-LR part). Data is rendered on the fly, never stored.
"""

from __future__ import annotations

import argparse
import calendar
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lowdim import json_text
from lowdim_sd.devices import device_problem

from .grid import save_grid
from .model_files import installed_refusal, model_path, not_a_model_folder, shipped_folder_default
from .train_config import (
    CAPTION_MODES,
    TrainConfig,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
    training_prompts,
)
from .train_init import load_vae, warm_start
from .train_loop import MAX_THREADS, Logger, StagePlan, run_stage
from .train_steps import (
    EVAL_STREAM,
    VAE_STAGE,
    render_batch,
    to_uint8,
    torch_gen,
    vae_loss,
)
from .train_unet import export_pipeline, train_unet


def train_vae(cfg: TrainConfig, out: Path, budget_s: float, log: Logger, resume: bool):
    vae = build_vae(cfg)
    log(f"VAE params: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M")
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)

    def step_fn(step: int) -> dict[str, float]:
        images, _ = render_batch(cfg.seed, VAE_STAGE, step, cfg.vae_batch, cfg.image_size)
        parts = vae_loss(vae, images, cfg.kl_weight, torch_gen(cfg.seed, VAE_STAGE, step))
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        return {k: v.item() for k, v in parts.items()}

    def on_sample(step: int) -> None:
        images, _ = render_batch(cfg.seed, EVAL_STREAM, 0, 12, cfg.image_size)
        with torch.no_grad():
            recon = vae.decode(vae.encode(images).latent_dist.mode()).sample
        save_grid(out / "samples" / f"vae_{step:06d}.png",
                  np.concatenate([to_uint8(images), to_uint8(recon)]), ncol=12, upscale=3)

    vae.train()
    run_stage("vae", out, StagePlan(budget_s), {"vae": vae}, opt, cfg.vae_lr, step_fn, cfg, log, resume,
              on_sample=on_sample)
    on_sample(10**6 - 1)
    vae.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def set_scaling_factor(vae, cfg: TrainConfig, log: Logger) -> float:
    """Scale latents to unit std, as SD's 0.18215 does for its VAE."""
    chunks: list[torch.Tensor] = []
    n = 0
    while n < cfg.latent_std_images:
        images, _ = render_batch(cfg.seed, EVAL_STREAM, 100 + len(chunks), 256, cfg.image_size)
        chunks.append(vae.encode(images).latent_dist.mode())
        n += 256
    lat = torch.cat(chunks)
    std, mean = float(lat.std()), float(lat.mean())
    vae.register_to_config(scaling_factor=1.0 / std)
    log(f"latent mean {mean:.3f} std {std:.3f} -> scaling_factor {1.0 / std:.4f} over {n} renders")
    return 1.0 / std


def run_tokenizer(folder: Path, cfg: TrainConfig, resume: bool):
    """The run's own tokenizer files on resume: a changed builder must not renumber the checkpoint's tokens."""
    if resume and (folder / "vocab.json").exists():
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(folder)
    return build_tokenizer(folder, cfg.max_text_length, cfg.captions)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with every value that cannot train refused in one line before anything is written."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-minutes", type=float, required=True,
                    help="active minutes for the whole run (stage 1, stage 2 and the export)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--micro", action="store_true", help="toy config for smoke tests")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="export folder (default: the package's model folder, in the checkout only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--deadline", default=None,
                    help="UTC HH:MM by which UNet training must stop (export follows); with --unet-steps "
                         "it pauses there instead, checkpointed, and --resume finishes the steps")
    ap.add_argument("--captions", choices=CAPTION_MODES, default="style",
                    help="style: captions name the style (the first model); attributes: they also "
                         "name hair, skin, eyes, glasses and beard (the shipped model, warm-started "
                         "from the first with --init-from; TRAINING.md)")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="exported TinyFaces folder to start stage 2 from (its VAE is kept, stage 1 skipped)")
    ap.add_argument("--unet-lr", type=float, default=None, help="stage 2 learning rate (default 3e-4)")
    ap.add_argument("--unet-batch", type=int, default=None, help="stage 2 images per step (default 64)")
    ap.add_argument("--unet-steps", type=int, default=None,
                    help="plan stage 2 in steps, not minutes: exactly this many, the LR schedule over them, so "
                         "the same command makes the same model under any load (at a fixed --threads: the "
                         "load-dependent thread switching is off); the budget then bounds stage 1 only")
    ap.add_argument("--device", default="cpu",
                    help="where stage 2 trains (cpu, cuda, cuda:1, ...); stage 1 and the renders stay on the CPU")
    args = ap.parse_args(argv)
    args.model_dir = args.model_dir or shipped_folder_default(model_path())
    if args.model_dir is None:
        ap.error(installed_refusal("--model-dir", "model it ships"))
    problem = args.init_from and not_a_model_folder(args.init_from)
    if problem:
        ap.error(f"--init-from {problem}")
    for flag, value in (("--unet-batch", args.unet_batch), ("--unet-steps", args.unet_steps)):
        if value is not None and value < 1:
            ap.error(f"{flag} must be >= 1, got {value}")
    problem = device_problem(args.device)
    if problem:
        ap.error(problem)
    return args


def run_config(args: argparse.Namespace, out: Path) -> TrainConfig:
    """The run's config: the one it started with when resuming (more --unet-steps extend it), else new."""
    cfg_path = out / "config.json"
    if args.resume and cfg_path.exists():
        cfg = TrainConfig(**json_text.loads(cfg_path.read_text()))
        if not args.unet_steps or args.unet_steps == cfg.unet_steps:
            return cfg
        cfg = dataclasses.replace(cfg, unet_steps=args.unet_steps)  # more steps extend a step-planned run
    else:
        cfg = TrainConfig().micro() if args.micro else TrainConfig()
        cfg = dataclasses.replace(cfg, captions=args.captions, unet_lr=args.unet_lr or cfg.unet_lr,
                                  unet_batch=args.unet_batch or cfg.unet_batch, unet_steps=args.unet_steps)
    cfg_path.write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    return cfg


def deadline_time(text: str | None) -> float | None:
    """``--deadline HH:MM`` (UTC, today) as unix time."""
    if not text:
        return None
    hh, mm = (int(x) for x in text.split(":"))
    day = time.gmtime()
    return calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, hh, mm, 0))


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    MAX_THREADS[0] = args.threads
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = Logger(out / "train.log")
    cfg = run_config(args, out)
    budget = args.budget_minutes * 60
    # A warm start skips stage 1 and gives its share to stage 2.
    vae_budget = 0.0 if args.init_from else budget * cfg.vae_fraction
    unet_budget = budget - vae_budget - cfg.reserve_minutes * 60 - 30  # 30 s for the latent std
    log(f"budget {budget:.0f}s: vae {vae_budget:.0f}s, unet {unet_budget:.0f}s; prompts "
        f"{training_prompts()}")

    torch.manual_seed(cfg.seed)  # model init; identical across resumes (then overwritten)
    tokenizer = run_tokenizer(out / "tokenizer", cfg, args.resume)
    if args.init_from:
        vae = load_vae(args.init_from)
        torch.manual_seed(cfg.seed + 1)
        unet, text_encoder = warm_start(cfg, args.init_from, tokenizer, log)
    else:
        vae = train_vae(cfg, out, vae_budget, log, args.resume)
        set_scaling_factor(vae, cfg, log)
        torch.manual_seed(cfg.seed + 1)
        unet, text_encoder = build_unet(cfg), build_text_encoder(cfg, len(tokenizer.get_vocab()))
    plan = StagePlan(unet_budget, deadline_time(args.deadline), cfg.unet_steps)
    unet, text_encoder, finished = train_unet(cfg, out, plan, log, args.resume, vae, unet, text_encoder,
                                              tokenizer, device=args.device)
    if not finished:
        return  # paused at --deadline before its --unet-steps: nothing to export yet
    export_pipeline(args.model_dir, vae, unet, text_encoder, tokenizer, out, log)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # the stage said where it stopped and that --resume continues
