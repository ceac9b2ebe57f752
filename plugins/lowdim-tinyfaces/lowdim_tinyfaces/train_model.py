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
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .grid import save_grid
from .model_files import model_path
from .train_config import (
    TrainConfig,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
    training_prompts,
)
from .train_state import EMA, load_checkpoint, save_checkpoint
from .train_steps import (
    EVAL_STREAM,
    VAE_STAGE,
    render_batch,
    to_uint8,
    torch_gen,
    vae_loss,
)


class Logger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def lr_scale(step: int, frac: float, warmup: int = 100) -> float:
    """Linear warm-up, flat, then cosine to 10% over the last 40% of the stage's time.

    Time-based rather than step-based because the CPU is shared: the step rate
    varies, and a step-planned schedule could be cut off before it annealed.
    """
    w = min(1.0, (step + 1) / warmup)
    if frac < 0.6:
        return w
    p = min(1.0, (frac - 0.6) / 0.4)
    return w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


MAX_STEP_SECONDS = 60.0  # longest plausible step incl. a sample grid; longer = paused
MAX_THREADS = [2]  # set from --threads; a list so main() can update it


class ThreadTuner:
    """Re-picks 1 or 2 torch threads every ``period`` steps by timing a few steps of each.

    The 2 cores are shared with other jobs: measured here, a VAE step took 0.43 s with 2
    threads on an idle machine but ~5 s when two other processes were busy (OpenMP threads
    waiting on each other), while 1 thread took ~1.5 s. Load changes over a run, so re-test.
    """

    def __init__(self, max_threads: int, period: int = 250, probe: int = 3) -> None:
        # Probing is not free: the losing setting can be ~10x slower, so probe rarely.
        self.max_threads, self.period, self.probe = max_threads, period, probe
        self.times: dict[int, list[float]] = {}
        self.best = max_threads
        self.first: int | None = None  # probe right away after a (re)start, then periodically
        self.reference: float | None = None  # step time of the winner at the last probe

    def threads_for(self, step: int) -> int:
        if self.first is None:
            self.first = step
        k = (step - self.first) % self.period
        if self.max_threads > 1 and k < 2 * self.probe:
            return 1 if k < self.probe else self.max_threads
        return self.best

    def record(self, step: int, threads: int, seconds: float) -> None:
        k = (step - (self.first or 0)) % self.period
        if self.max_threads == 1:
            return
        if k >= 2 * self.probe:
            # Load changed (e.g. 2 threads went from fastest to 10x slower): re-probe now.
            if self.reference is not None and seconds > 2.5 * self.reference:
                self.first, self.reference = step + 1, None
            return
        self.times.setdefault(threads, []).append(seconds)
        if k == 2 * self.probe - 1:
            # Median of the last probes, dropping the first of each (thread-pool warm-up).
            med = {t: float(np.median(v[1:] or v)) for t, v in self.times.items()}
            self.best = min(med, key=med.get)
            self.reference = med[self.best]
            self.times = {}


def run_stage(
    name: str,
    out: Path,
    budget_s: float,
    modules: dict[str, torch.nn.Module],
    opt: torch.optim.Optimizer,
    base_lr: float,
    step_fn: Callable[[int], dict[str, float]],
    cfg: TrainConfig,
    log: Logger,
    resume: bool,
    ema: EMA | None = None,
    on_sample: Callable[[int], None] | None = None,
    max_threads: int | None = None,
    deadline: float | None = None,
) -> dict:
    """Generic time-budgeted loop with periodic checkpoints and sample grids.

    ``budget_s`` counts active seconds across resumes; ``deadline`` (unix time) also
    shrinks the budget so the stage, and its LR annealing, end by then.
    """
    meta = load_checkpoint(out, name, modules, opt, ema) if resume else None
    state = {"step": 0, "elapsed": 0.0, "done": False} if meta is None else meta
    if meta is not None:
        log(f"[{name}] resumed at step {state['step']} ({state['elapsed']:.0f}s used)")
    if state["done"]:
        return state
    elapsed = state["elapsed"]
    tick = time.time()
    last_ckpt = last_sample = last_log = time.time()
    step, losses, log_step = state["step"], [], state["step"]
    tuner = ThreadTuner(max_threads or MAX_THREADS[0])

    def save() -> None:
        state.update(step=step, elapsed=elapsed)
        save_checkpoint(out, name, modules, opt, ema, state)

    while True:
        now = time.time()
        # Active time only: a gap far longer than any step means the process was paused
        # (SIGSTOP by a neighbour, suspend); that time must not eat the training budget.
        elapsed += min(now - tick, MAX_STEP_SECONDS)
        tick = now
        budget = budget_s if deadline is None else min(budget_s, elapsed + deadline - now)
        if elapsed >= budget:
            break
        for g in opt.param_groups:
            g["lr"] = base_lr * lr_scale(step, elapsed / budget)
        threads = tuner.threads_for(step)
        torch.set_num_threads(threads)
        t0 = time.time()
        losses.append(step_fn(step))
        tuner.record(step, threads, time.time() - t0)
        step += 1
        if ema is not None:
            ema.update(modules, step)
        now = time.time()
        if now - last_log > 30:
            mean = {k: float(np.mean([x[k] for x in losses])) for k in losses[0]}
            rate = (step - log_step) / (now - last_log)
            parts = " ".join(f"{k}={v:.4f}" for k, v in mean.items())
            log(f"[{name}] step {step} {parts} lr={opt.param_groups[0]['lr']:.2e} "
                f"it/s={rate:.2f} threads={tuner.best} t={elapsed:.0f}/{budget:.0f}s")
            losses, last_log, log_step = [], now, step
        if now - last_ckpt > cfg.checkpoint_minutes * 60:
            save()
            last_ckpt = now
        if on_sample is not None and now - last_sample > cfg.sample_minutes * 60:
            on_sample(step)
            last_sample = time.time()
    state["done"] = True
    save()
    log(f"[{name}] finished at step {step}")
    return state


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
    run_stage("vae", out, budget_s, {"vae": vae}, opt, cfg.vae_lr, step_fn, cfg, log, resume,
              on_sample=on_sample)
    on_sample(10**6 - 1)
    vae.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def set_scaling_factor(vae, cfg: TrainConfig, log: Logger) -> float:
    """Scale latents to unit std, as SD's 0.18215 does for its VAE."""
    chunks, n = [], 0
    while n < cfg.latent_std_images:
        images, _ = render_batch(cfg.seed, EVAL_STREAM, 100 + len(chunks), 256, cfg.image_size)
        chunks.append(vae.encode(images).latent_dist.mode())
        n += 256
    lat = torch.cat(chunks)
    std, mean = float(lat.std()), float(lat.mean())
    vae.register_to_config(scaling_factor=1.0 / std)
    log(f"latent mean {mean:.3f} std {std:.3f} -> scaling_factor {1.0 / std:.4f} over {n} renders")
    return 1.0 / std


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-minutes", type=float, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--micro", action="store_true", help="toy config for smoke tests")
    ap.add_argument("--model-dir", type=Path, default=None, help="export folder (default: package)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--deadline", default=None,
                    help="UTC HH:MM by which UNet training must stop (export follows)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    MAX_THREADS[0] = args.threads
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = Logger(out / "train.log")
    cfg_path = out / "config.json"
    if args.resume and cfg_path.exists():
        cfg = TrainConfig(**json.loads(cfg_path.read_text()))
    else:
        cfg = TrainConfig().micro() if args.micro else TrainConfig()
        cfg_path.write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    budget = args.budget_minutes * 60
    vae_budget = budget * cfg.vae_fraction
    unet_budget = budget - vae_budget - cfg.reserve_minutes * 60 - 30  # 30 s for the latent std
    log(f"budget {budget:.0f}s: vae {vae_budget:.0f}s, unet {unet_budget:.0f}s; prompts "
        f"{training_prompts()}")

    torch.manual_seed(cfg.seed)  # model init; identical across resumes (then overwritten)
    vae = train_vae(cfg, out, vae_budget, log, args.resume)
    set_scaling_factor(vae, cfg, log)
    from .train_unet import export_pipeline, train_unet

    tokenizer = build_tokenizer(out / "tokenizer", cfg.max_text_length)
    torch.manual_seed(cfg.seed + 1)
    unet, text_encoder = build_unet(cfg), build_text_encoder(cfg)
    deadline = None
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        day = time.gmtime()
        deadline = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, hh, mm, 0))
    unet, text_encoder = train_unet(cfg, out, unet_budget, log, args.resume, vae, unet,
                                    text_encoder, tokenizer, deadline)
    model_dir = args.model_dir or model_path()
    export_pipeline(model_dir, vae, unet, text_encoder, tokenizer, out, log)

if __name__ == "__main__":
    main()
