"""Where personalize's time goes on a GPU: the merge (cProfile) and a rank-relaxed finetune step (torch.profiler),
eager and with the text encoder and the UNet replayed from CUDA graphs (``--cuda-graphs``).

Issue 18's GPU goal (personalize in ≤ 5 s) needs a step well under 0.1 s at 512 px; this says whether a
step is bound by the GPU's kernels or by the host launching them, which operations cost most, and what of
the merge's 3.2 s (H200, 2026-11-30) is host work.

    python benchmarks/profile_step.py MODEL_DIR [--device cuda] [--dtype fp16] [--steps 4] > profile.txt

MODEL_DIR is any diffusers SD folder, e.g. the random SD1.5 that `lowdim bench speed` saves in OUT/model.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import sys
import time
import traceback

import torch
from torch.profiler import ProfilerActivity, profile

import lowdim
from lowdim_sd import defaults
from lowdim_sd.bench.speed_measures import relaxed_start
from lowdim_sd.loading import load_sd
from lowdim_sd.train import Subject, TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="fp16")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=None)
    args = parser.parse_args()
    model = load_sd(args.model_dir, args.device, args.dtype)
    for when in ("cold", "warm"):  # warm: LiDB's bases are cached, as when a process personalizes again
        lowdim.Adapters(model.modules).remove_all()
        with cprofiled(f"merge ({when}): add a LiDB, relax it to a merged stack with LoRA r=4", model.device):
            trainable = relaxed_start(model)
    size = args.resolution or model.resolution
    subjects = [Subject(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1, 0)]

    def run(steps: int, graphs: bool = False) -> float:
        config = TrainConfig(steps=steps, learning_rate=defaults.FINETUNE_LR, seed=0, cuda_graphs=graphs)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        train(model, subjects, trainable, config, progress=False)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    # The first run pays the process's set-up (10.6 s on the H200 on 2026-11-30): which calls hold it.
    with profile(activities=[ProfilerActivity.CPU]) as first:
        print(f"first run of 2 steps: {run(2):.3f} s (includes the one-time set-up)")
    print("\n== the first run's operations by host time ==")
    print(first.key_averages().table(sort_by="cpu_time_total", row_limit=15, max_name_column_width=60))
    print(f"warm: {run(args.steps) / args.steps:.4f} s per step over {args.steps} steps")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if model.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        wall = run(args.steps)
    events = prof.key_averages()
    device_time = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e6
    launches = sum(e.count for e in events if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
    print(f"profiled: {wall / args.steps:.4f} s per step wall; kernels {device_time / args.steps:.4f} s per step; "
          f"{launches / args.steps:.0f} kernel launches per step")
    for key in (["self_cuda_time_total"] if model.device.type == "cuda" else []) + ["self_cpu_time_total"]:
        print(f"\n== top operations by {key} ==")
        print(events.table(sort_by=key, row_limit=25, max_name_column_width=60))
    if model.device.type == "cuda":
        try:  # each run captures its own graph: the difference between the two runs is 36 steps' replay
            for steps in (args.steps, 40):
                print(f"CUDA graphs, {steps} steps: {run(steps, graphs=True):.3f} s in all, capture included")
        except Exception:  # what a capture fails on is this script's finding, not its end
            traceback.print_exc(file=sys.stdout)


@contextlib.contextmanager
def cprofiled(title: str, device: torch.device):
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
    profiler.disable()
    print(f"\n== {title}: {time.perf_counter() - started:.3f} s ==")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
