"""Operations a warm rank-relaxed finetune step dispatches, by part of the step: a count, not a time.

On a GPU at batch 1 an SD1.5 step is bound by the host launching kernels (docs/benchmarks.md), so the
number of kernel-launching operations is what a step costs there. Counting them needs no GPU and no
repeats: the count is the same on every run. View operations (reshape, transpose, ...) launch nothing
and are left out. The engine asks torch for its fused AdamW, one kernel for all the parameters on a CPU
and on a GPU alike (torch's default is one parameter at a time on a CPU, a few multi-tensor kernels on a GPU).

    python benchmarks/count_step_launches.py            # SD1.5's architecture, random weights, 64 px
    python benchmarks/count_step_launches.py --quick    # the tests' tiny pipeline
    python benchmarks/count_step_launches.py --peers    # lowdim's adapters against peft's LoRA, bf16
"""

from __future__ import annotations

import argparse
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import lowdim
import lowdim_sd.divergence as divergence
import lowdim_sd.train as engine
import lowdim_sd.train_loss as train_loss
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
        self.patched: list[tuple[object, str, bool, object]] = []

    def __exit__(self, *exc_info):
        for owner, attribute, own, original in reversed(self.patched):  # every wrapped call as it was
            if own:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)
        self.patched.clear()
        return super().__exit__(*exc_info)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] not in VIEWS:
            self.counts[self.part] += 1
        return func(*args, **(kwargs or {}))

    def attributing(self, owner, attribute: str, part: str) -> None:
        """Count what ``owner.attribute(...)`` dispatches as ``part``."""
        original = getattr(owner, attribute)
        own = attribute in vars(owner)  # else it comes from the class, and deleting ours restores it
        self.patched.append((owner, attribute, own, vars(owner).get(attribute)))

        def counted(*args, **kwargs):
            outer, self.part = self.part, part
            try:
                return original(*args, **kwargs)
            finally:
                self.part = outer

        setattr(owner, attribute, counted)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tests' tiny pipeline instead of SD1.5's")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--peers", action="store_true",
                        help="instead: lowdim against peft, a train step and a guided UNet call, bf16")
    args = parser.parse_args(argv)
    resolution = 16 if args.quick else 64  # the count depends on the layers, not on the picture's size
    pipe = build_pipeline(SCALES["quick" if args.quick else "full"])
    pipe.unet.config.sample_size = resolution // pipe.vae_scale_factor
    name = "quick" if args.quick else "SD1.5"
    if args.peers:
        peers(pipe.to(torch.bfloat16), resolution, name)
    else:
        step_parts(pipe, resolution, args.steps, name)


def step_parts(pipe, resolution: int, steps: int, name: str) -> None:
    model = SDModel(pipe=pipe, name="count", source="count", device=torch.device("cpu"), dtype=torch.float32)
    lowdim.Adapters(model.modules).add("initial", lowdim.get_space("lidb"), LAYER_SETS["unet+text"], seed=0)
    trainable = relaxed_trainable(model, "initial", rank=4, seed=0, metadata={"base_model": "count", "token": "sks"})
    subjects = [engine.Subject(torch.rand(1, 3, resolution, resolution) * 2 - 1, 0)]
    config = engine.TrainConfig(steps=steps, learning_rate=3e-3, seed=0)
    engine.train(model, subjects, trainable, config, progress=False)  # warm (each run makes its own optimizer)
    counter = Counter()
    counter.attributing(pipe.vae, "encode", "VAE encode (no grad)")
    counter.attributing(pipe.text_encoder, "forward", "text encoder forward")
    counter.attributing(pipe.unet, "forward", "UNet forward")
    counter.attributing(torch.Tensor, "backward", "backward (UNet, text encoder, adapters)")
    counter.attributing(train_loss, "subject_draws", "images, augmentation, noise draws")
    counter.attributing(engine, "clip_per_subject", "gradient clipping")
    counter.attributing(divergence, "all_finite", "finiteness check")
    counter.attributing(torch.optim.AdamW, "step", "AdamW (fused)")
    counter.attributing(torch.optim.AdamW, "_init_group", "AdamW's state, made in a run's first step")
    with counter:
        engine.train(model, subjects, trainable, config, progress=False)
    print(f"{name} architecture, {len(trainable.parameters)} trainable tensors, torch {torch.__version__}; "
          f"operations per step (mean of {steps} steps)\n")
    print("| part of the step | operations |\n|---|---:|")
    for part, count in counter.counts.most_common():
        print(f"| {part} | {count / steps:,.0f} |")
    print(f"| **all** | **{sum(counter.counts.values()) / steps:,.0f}** |")


def peers(pipe, resolution: int, name: str) -> None:
    """The engine's step (forward and backward, not AdamW; after one uncounted step) and a guided UNet call
    (batch 2, no grad, after one uncounted call), for each adapter on the 176 layers of ``unet+text`` of a
    bf16 model."""
    model = SDModel(pipe=pipe, name="count", source="count", device=torch.device("cpu"), dtype=torch.bfloat16)
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    ids = pipe.tokenizer("a sks face", padding="max_length", max_length=77, return_tensors="pt").input_ids
    subject, config = engine.Subject(torch.rand(1, 3, resolution, resolution) * 2 - 1, 0), engine.TrainConfig()
    side = resolution // pipe.vae_scale_factor
    call = (torch.randn(2, 4, side, side, dtype=torch.bfloat16), torch.tensor([500, 500]),
            torch.randn(2, 77, pipe.unet.config.cross_attention_dim, dtype=torch.bfloat16))

    def count() -> tuple[int, int]:
        pipe.unet.train()
        engine.denoising_losses(model, [subject], config, 0, 0, ids).sum().backward()  # warm: one-time stacks
        for parameter in model.modules.parameters():  # as the engine's zero_grad: no accumulation counted
            parameter.grad = None
        with Counter() as step:
            engine.denoising_losses(model, [subject], config, 0, 0, ids).sum().backward()
        pipe.unet.eval()
        with torch.no_grad():
            pipe.unet(*call)
            with Counter() as guided:
                pipe.unet(*call)
        return sum(step.counts.values()), sum(guided.counts.values())

    rows = {}
    for label, space, options in (("LoRA r=1", "lora", {"rank": 1}), ("LoRA r=4", "lora", {"rank": 4}),
                                  ("LiDB a=100 b=50 r=1", "lidb", {})):
        lowdim.Adapters(model.modules).add("peer", lowdim.get_space(space, **options), LAYER_SETS["unet+text"])
        rows[f"lowdim {label} (fp32 weights)"] = count()
        lowdim.Adapters(model.modules).remove_all()
    for rank in (1, 4):
        for train_dtype in ("bf16", "fp32"):
            rows[f"peft LoRA r={rank}, {train_dtype} weights"] = peft_counts(model, rank, train_dtype, count)
    print(f"{name} architecture in bf16, torch {torch.__version__}; operations of one train step (forward and "
          f"backward) and of one guided UNet call\n")
    print("| adapter | train step | UNet call |\n|---|---:|---:|")
    for label, (step, guided) in rows.items():
        print(f"| {label} | {step:,} | {guided:,} |")


def peft_counts(model: SDModel, rank: int, weights: str, count) -> tuple[int, int]:
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig, inject_adapter_in_model

    from lowdim.injection.select import select_layers
    from lowdim_sd.bench.speed_adapters import remove_peft

    names = [name for name, _ in select_layers(model.modules, LAYER_SETS["unet+text"])]
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=names, lora_dropout=0.0),
                            model.modules, adapter_name="peer")
    if weights == "fp32":
        cast_training_params(model.modules, dtype=torch.float32)
    try:
        return count()
    finally:
        remove_peft(model, names)


if __name__ == "__main__":
    main()
