"""Images per second of the TinyFaces renderer on one CPU thread.

Run: python benchmarks/bench_render.py [--batch 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from lowdim_tinyfaces import CARDINALITIES, STYLES, render


def images_per_second(batch: int, size: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    levels = rng.integers(0, CARDINALITIES, size=(batch, len(CARDINALITIES)))
    styles = [STYLES[i % len(STYLES)] for i in range(batch)]
    seeds = np.arange(batch)
    render(levels, styles, seeds, size)  # warm-up: allocator and dispatch caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        render(levels, styles, seeds, size)
        best = min(best, time.perf_counter() - start)
    return batch / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch={args.batch} threads={args.threads} (best of {args.repeats})")
    print(f"{'size':>6} {'images/s':>10}")
    for size in (32, 48, 64):
        print(f"{size:>6} {images_per_second(args.batch, size, args.repeats):>10.0f}")


if __name__ == "__main__":
    main()
