"""Fast-finetune seconds of `personalize` with and without --keep-styles, side by side in one run.

    python benchmarks/keep_styles_speed.py --runs 3 --threads 2

Alternates the two settings on TinyFaces (the bundled model, examples/face.png, no preview) and prints
each run's seconds and the ratio of the medians. docs/sd.md quotes it; run it with nothing else on the
machine, since a busy CPU slows one setting and not the other.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from lowdim_sd.personalize import PersonalizeJob, personalize


def finetune_seconds(keep_styles: float, out: Path) -> float:
    job = PersonalizeJob(model="tinyfaces", image=Path("examples/face.png"), out=out, preview=False,
                         overwrite=True, keep_styles=keep_styles)
    return personalize(job, progress=False).stages["fast finetune"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-styles", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {"default": 0.0, f"--keep-styles {args.keep_styles}": args.keep_styles}
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as folder:
        finetune_seconds(0.0, Path(folder) / "warm-up")  # imports and caches, outside the measurement
        for _ in range(args.runs):
            for name, weight in settings.items():
                seconds[name].append(finetune_seconds(weight, Path(folder) / "run"))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"| setting | fast finetune, s (median of {args.runs}) | runs | ratio |\n|---|---:|---|---:|")
    for name, values in seconds.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {medians[name]:.2f} | {runs} | {medians[name] / medians['default']:.2f}× |")


if __name__ == "__main__":
    main()
