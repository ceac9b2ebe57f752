"""The time-budgeted training loop both TinyFaces stages run (VAE in ``train_model``, UNet in ``train_unet``).

Its own module so that ``train_model`` (which runs both stages) and ``train_unet`` import it
rather than each other.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """Linear warm-up, flat, then cosine to 10% over the last 40% of the stage (``frac``).

    ``frac`` is the share of the stage's time by default, since the CPU is shared: the step rate
    varies, and a step-planned schedule could be cut off before it annealed. A run given a number
    of steps passes the share of its steps instead, so the same command makes the same model.
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

    def __init__(self, max_threads: int, period: int = 250, probe: int = 3, tune: bool = True) -> None:
        # Probing is not free: the losing setting can be ~10x slower, so probe rarely.
        self.max_threads, self.period, self.probe = max_threads, period, probe
        # Off for a run planned in steps: 1 and 2 threads sum gradients in another order (1e-8 apart), so a
        # load-dependent choice would make the same command give a (slightly) different model.
        self.tune = tune
        self.times: dict[int, list[float]] = {}
        self.best = max_threads
        self.first: int | None = None  # probe right away after a (re)start, then periodically
        self.reference: float | None = None  # step time of the winner at the last probe

    def threads_for(self, step: int) -> int:
        if self.first is None:
            self.first = step
        k = (step - self.first) % self.period
        if self.tune and self.max_threads > 1 and k < 2 * self.probe:
            return 1 if k < self.probe else self.max_threads
        return self.best

    def record(self, step: int, threads: int, seconds: float) -> None:
        k = (step - (self.first or 0)) % self.period
        if self.max_threads == 1 or not self.tune:
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
            self.best = min(med, key=med.__getitem__)
            self.reference = med[self.best]
            self.times = {}


@dataclass(frozen=True)
class StagePlan:
    """When a stage ends and how far along its LR schedule it is.

    By default the stage is planned in active seconds (``budget_s``, counted across resumes), and a
    ``deadline`` (unix time) shrinks the budget so the stage, and its annealing, end by then. With
    ``steps`` it is planned in steps: it ends after exactly that many whatever the time, so the same
    command makes the same model, and a ``deadline`` only pauses it for a later ``--resume``.
    """

    budget_s: float
    deadline: float | None = None
    steps: int | None = None

    def finished(self, state: dict) -> bool:
        return state["done"] and (state["elapsed"] >= self.budget_s if self.steps is None
                                  else state["step"] >= self.steps)

    def paused(self, step: int, now: float) -> bool:
        return self.steps is not None and self.deadline is not None and now >= self.deadline and step < self.steps

    def progress(self, step: int, elapsed: float, now: float) -> float | None:
        """The share of the stage done, for ``lr_scale``; None once the stage must stop."""
        if self.steps is not None:
            return None if step >= self.steps or self.paused(step, now) else step / self.steps
        budget = self.budget(elapsed, now)
        return None if elapsed >= budget else elapsed / budget

    def budget(self, elapsed: float, now: float) -> float:
        return self.budget_s if self.deadline is None else min(self.budget_s, elapsed + self.deadline - now)

    def describe(self, elapsed: float, now: float) -> str:
        if self.steps is not None:
            return f"of {self.steps} steps, t={elapsed:.0f}s"
        return f"t={elapsed:.0f}/{self.budget(elapsed, now):.0f}s"


@contextlib.contextmanager
def interrupt_after_the_step() -> Iterator[list[int]]:
    """Ctrl-C lets the step in flight finish (an optimizer update stopped halfway cannot be checkpointed):
    the list it yields is non-empty from then on. A second Ctrl-C stops at once."""
    asked: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield asked
        return

    def ask(signum: int, frame) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)
        print("stopping after this step (Ctrl-C again to stop at once, losing it)", flush=True)

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)


class _Chores:
    """What the loop does now and then between steps: a log line every 30 s, a checkpoint and a sample
    grid as often as the config says."""

    def __init__(self, name: str, plan: StagePlan, cfg: TrainConfig, log: Logger, opt: torch.optim.Optimizer,
                 tuner: ThreadTuner, save: Callable[[], None], on_sample: Callable[[int], None] | None,
                 step: int) -> None:
        self.name, self.plan, self.cfg, self.log, self.opt, self.tuner = name, plan, cfg, log, opt, tuner
        self.save, self.on_sample = save, on_sample
        self.last_checkpoint = self.last_sample = self.last_log = time.time()
        self.losses: list[dict[str, float]] = []
        self.log_step = step

    def after(self, step: int, elapsed: float, losses: dict[str, float]) -> None:
        self.losses.append(losses)
        now = time.time()
        if now - self.last_log > 30:
            self._log_progress(step, elapsed, now)
        if now - self.last_checkpoint > self.cfg.checkpoint_minutes * 60:
            self.save()
            self.last_checkpoint = now
        if self.on_sample is not None and now - self.last_sample > self.cfg.sample_minutes * 60:
            self.on_sample(step)
            self.last_sample = time.time()

    def _log_progress(self, step: int, elapsed: float, now: float) -> None:
        mean = {k: float(np.mean([x[k] for x in self.losses])) for k in self.losses[0]}
        rate = (step - self.log_step) / (now - self.last_log)
        parts = " ".join(f"{k}={v:.4f}" for k, v in mean.items())
        self.log(f"[{self.name}] step {step} {parts} lr={self.opt.param_groups[0]['lr']:.2e} "
                 f"it/s={rate:.2f} threads={self.tuner.best} {self.plan.describe(elapsed, now)}")
        self.losses, self.last_log, self.log_step = [], now, step


def run_stage(
    name: str,
    out: Path,
    plan: StagePlan,
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
) -> dict:
    """The training loop of one stage, as ``plan`` says, with periodic checkpoints and sample grids."""
    meta = load_checkpoint(out, name, modules, opt, ema) if resume else None
    # Annotated: mypy would join the fresh dict's int/float/bool values to float and make ``step`` a float.
    state: dict[str, Any] = {"step": 0, "elapsed": 0.0, "done": False} if meta is None else meta
    if meta is not None:
        log(f"[{name}] resumed at step {state['step']} ({state['elapsed']:.0f}s used)")
    if plan.finished(state):
        return state  # finished as planned; a larger --budget-minutes (or --unet-steps) extends it
    elapsed: float = state["elapsed"]
    step: int = state["step"]
    tick = time.time()
    tuner = ThreadTuner(max_threads or MAX_THREADS[0], tune=plan.steps is None)

    def save() -> None:
        state.update(step=step, elapsed=elapsed)
        save_checkpoint(out, name, modules, opt, ema, state)

    chores = _Chores(name, plan, cfg, log, opt, tuner, save, on_sample, step)
    with interrupt_after_the_step() as interrupted:
        while not interrupted:
            now = time.time()
            # Active time only: a gap far longer than any step means the process was paused
            # (SIGSTOP by a neighbour, suspend); that time must not eat the training budget.
            elapsed += min(now - tick, MAX_STEP_SECONDS)
            tick = now
            progress = plan.progress(step, elapsed, now)
            if progress is None:
                break
            for g in opt.param_groups:
                g["lr"] = base_lr * lr_scale(step, progress)
            threads = tuner.threads_for(step)
            torch.set_num_threads(threads)
            t0 = time.time()
            losses = step_fn(step)
            tuner.record(step, threads, time.time() - t0)
            step += 1
            if ema is not None:
                ema.update(modules, step)
            chores.after(step, elapsed, losses)
    return _end_stage(name, plan, state, step, save, log, interrupted=bool(interrupted))


def _end_stage(name: str, plan: StagePlan, state: dict, step: int, save: Callable[[], None], log: Logger,
               interrupted: bool) -> dict:
    """The last checkpoint: finished, paused at the deadline (``--resume`` goes on), or stopped by Ctrl-C."""
    if interrupted:
        state["done"] = False
        save()
        log(f"[{name}] interrupted at step {step}; checkpoint saved; --resume continues it")
        raise KeyboardInterrupt
    paused = plan.paused(step, time.time())
    state["done"] = not paused
    save()
    log(f"[{name}] paused at the deadline at step {step} of {plan.steps}; --resume continues it" if paused
        else f"[{name}] finished at step {step}")
    return state
