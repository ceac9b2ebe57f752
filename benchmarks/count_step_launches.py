"""Operations a warm rank-relaxed finetune step dispatches, by part of the step: a count, not a time.

On a GPU at batch 1 an SD1.5 step is bound by the host launching kernels (docs/benchmarks.md), so the
number of kernel-launching operations is what a step costs there. Counting them needs no GPU and no
repeats: the count is the same on every run. View operations (reshape, transpose, ...) launch nothing
and are left out. The CPU runs AdamW one parameter at a time; on a GPU it runs a few multi-tensor
kernels for all of them, so the optimizer row is the CPU's.

    python benchmarks/count_step_launches.py            # SD1.5's architecture, random weights, 64 px
    python benchmarks/count_step_launches.py --quick    # the tests' tiny pipeline
"""

from __future__ import annotations

import argparse
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import lowdim
import lowdim_sd.train as engine
from lowdim_sd.architecture import LAYER_SETS
from lowdim_sd.bench.speed_setup import SCALES, build_pipeline
from lowdim_sd.loading import SDModel
from lowdim_sd.modes import relaxed_trainable

VIEWS = {"view", "_unsafe_view", "expand", "t", "transpose", "permute", "reshape", "unsqueeze", "squeeze", "slice",
         "select", "as_strided", "detach", "alias", "split", "chunk", "unbind", "flatten", "_reshape_alias",
         "split_with_sizes", "lift_fresh", "movedim", "narrow", "view_as", "unflatten", "empty", "empty_like",
         "empty_strided"}


class Counter(TorchDispatchMode):
    """Counts every dispatched non-view operation under the current part's name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter = collections.Counter()
        self.part = "rest of the step (loss, noise, timesteps)"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] not in VIEWS:
            self.counts[self.part] += 1
        return func(*args, **(kwargs or {}))

    def attributing(self, owner, attribute: str, part: str) -> None:
        """Count what ``owner.attribute(...)`` dispatches as ``part``."""
        original = getattr(owner, attribute)

        def counted(*args, **kwargs):
            outer, self.part = self.part, part
            try:
                return original(*args, **kwargs)
            finally:
                self.part = outer

        setattr(owner, attribute, counted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tests' tiny pipeline instead of SD1.5's")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    scale = SCALES["quick" if args.quick else "full"]
    pipe = build_pipeline(scale)
    resolution = 16 if args.quick else 64  # the count depends on the layers, not on the picture's size
    pipe.unet.config.sample_size = resolution // pipe.vae_scale_factor
    model = SDModel(pipe=pipe, name="count", source="count", device=torch.device("cpu"), dtype=torch.float32)
    lowdim.Adapters(model.modules).add("initial", lowdim.get_space("lidb"), LAYER_SETS["unet+text"], seed=0)
    trainable = relaxed_trainable(model, "initial", rank=4, seed=0, metadata={"base_model": "count", "token": "sks"})
    subjects = [engine.Subject(torch.rand(1, 3, resolution, resolution) * 2 - 1, 0)]
    config = engine.TrainConfig(steps=args.steps, learning_rate=3e-3, seed=0)
    engine.train(model, subjects, trainable, config, progress=False)  # warm: the optimizer's state exists
    counter = Counter()
    counter.attributing(pipe.vae, "encode", "VAE encode (no grad)")
    counter.attributing(pipe.text_encoder, "forward", "text encoder forward")
    counter.attributing(pipe.unet, "forward", "UNet forward")
    counter.attributing(torch.Tensor, "backward", "backward (UNet, text encoder, adapters)")
    counter.attributing(engine, "_subject_draws", "images, augmentation, noise draws")
    counter.attributing(engine, "clip_per_subject", "gradient clipping")
    counter.attributing(engine, "_all_finite", "finiteness check")
    counter.attributing(torch.optim.AdamW, "step", "AdamW (CPU: per parameter)")
    with counter:
        engine.train(model, subjects, trainable, config, progress=False)
    print(f"{'quick' if args.quick else 'SD1.5'} architecture, {len(trainable.parameters)} trainable tensors, "
          f"torch {torch.__version__}; operations per step (mean of {args.steps} steps)\n")
    print("| part of the step | operations |\n|---|---:|")
    for part, count in counter.counts.most_common():
        print(f"| {part} | {count / args.steps:,.0f} |")
    print(f"| **all** | **{sum(counter.counts.values()) / args.steps:,.0f}** |")


if __name__ == "__main__":
    main()
