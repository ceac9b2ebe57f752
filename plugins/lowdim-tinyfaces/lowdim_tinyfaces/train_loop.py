"""The time-budgeted training loop both TinyFaces stages run (VAE in ``train_model``, UNet in ``train_unet``).

Its own module so that ``train_model`` (which runs both stages) and ``train_unet`` import it
rather than each other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .train_config import TrainConfig
from .train_state import EMA, load_checkpoint, save_checkpoint


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
    if state["done"] and state["elapsed"] >= budget_s:
        return state  # finished within this budget; a larger --budget-minutes extends it
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
