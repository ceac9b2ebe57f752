"""The one-time set-up of a process's first training run: its first 2 steps against the next 2.

On the H200 on 2026-11-30 the first training run of a process paid 10.6 s more than a warm one, and a
CLI `personalize` pays it every time. The set-up is once per process, so comparing remedies (for example
the environment variable TORCH_CUDNN_USE_HEURISTIC_MODE_B=1, if cuDNN's plan building for each
convolution's backward is what costs) takes one process per setting; this is that process.

    python benchmarks/first_run.py MODEL_DIR [--device cuda] [--dtype fp16]

MODEL_DIR is any diffusers SD folder, e.g. the random SD1.5 that `lowdim bench speed` saves in OUT/model.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from lowdim_sd import defaults
from lowdim_sd.bench.speed_measures import relaxed_start
from lowdim_sd.loading import load_sd
from lowdim_sd.train import Subject, TrainConfig, train

SETTINGS = ("TORCH_CUDNN_USE_HEURISTIC_MODE_B", "TORCH_CUDNN_V8_API_LRU_CACHE_LIMIT", "CUDA_MODULE_LOADING")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="fp16")
    parser.add_argument("--resolution", type=int, default=None)
    args = parser.parse_args(argv)
    model = load_sd(args.model_dir, args.device, args.dtype)
    trainable = relaxed_start(model)
    size = args.resolution or model.resolution
    subjects = [Subject(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1, 0)]

    def seconds(steps: int) -> float:
        config = TrainConfig(steps=steps, learning_rate=defaults.FINETUNE_LR, seed=0)
        started = time.perf_counter()
        train(model, subjects, trainable, config, progress=False)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    first, warm = seconds(2), seconds(2)
    chosen = ", ".join(f"{name}={os.environ[name]}" for name in SETTINGS if name in os.environ) or "defaults"
    print(f"{chosen}: first run of 2 steps {first:.3f} s, the next 2 steps {warm:.3f} s, "
          f"one-time set-up {first - warm:.3f} s")


if __name__ == "__main__":
    main()
