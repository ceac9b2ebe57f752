"""Host time of the adapters' share of a train step and of a call, measured where the arithmetic is nil.

At batch 1 a GPU step waits on its host: Python and the dispatcher, per operation (docs/benchmarks.md).
``count_step_launches.py`` counts the operations; this times them. It adapts 176 tiny layers in the
layer-shape groups of SD1.5's ``unet+text`` (UNet widths 320/640/1280 and the 768-wide prompt, scaled
down 40×), in bf16 with fp32 adapter weights as training keeps them, and gives each layer its own input.
The arithmetic is then a few hundred numbers per layer, so what a step costs is what the host does: a
lower bound of what each adapter adds to a host-bound GPU step. Rounds alternate the adapters side by
side, and each row is the fastest round, the least disturbed by other work on a shared machine.

    python benchmarks/host_time.py            # 176 layers, 7 rounds
    python benchmarks/host_time.py --quick    # 19 layers, 2 rounds (the test's)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

import lowdim
from lowdim import stacked_factors
from lowdim_sd.bench.speed_adapters import unwrap_peft

# (in, out) of SD1.5's adapted layers, 40× smaller: per UNet transformer block q, k, v, out of self-attention
# and q, out of cross-attention are width x width, k and v of cross-attention read the 768-wide prompt; the
# text encoder's 12 layers have q, k, v, out at 768.
UNET_BLOCKS = {8: 5, 16: 5, 32: 6}  # width / 40 -> transformer blocks (down, mid, up)
PROMPT = 19  # 768 / 40


def layer_shapes(scale: int = 1) -> list[tuple[int, int]]:
    shapes = []
    for width, blocks in UNET_BLOCKS.items():
        shapes += [(width, width)] * (6 * blocks // scale) + [(PROMPT, width)] * (2 * blocks // scale)
    return shapes + [(PROMPT, PROMPT)] * (48 // scale)


def build(shapes: list[tuple[int, int]]) -> nn.ModuleDict:
    torch.manual_seed(0)
    layers = nn.ModuleDict({f"layer{i:03d}": nn.Linear(i_, o) for i, (i_, o) in enumerate(shapes)})
    return layers.to(torch.bfloat16).requires_grad_(False)


def lowdim_variant(space: str, **options) -> Callable[[nn.ModuleDict], Callable[[], None]]:
    def attach(layers: nn.ModuleDict) -> Callable[[], None]:
        adapters = lowdim.Adapters(layers)
        adapters.add("bench", lowdim.get_space(space, **options), list(layers.keys()))
        with torch.no_grad():  # non-zero factors, as after a first step
            for param in adapters.parameters("bench"):
                param.normal_(0, 0.02)
        return lambda: adapters.remove_all()
    return attach


def peft_variant(rank: int) -> Callable[[nn.ModuleDict], Callable[[], None]]:
    def attach(layers: nn.ModuleDict) -> Callable[[], None]:
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig, inject_adapter_in_model

        names = list(layers.keys())
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=names, lora_dropout=0.0),
                                layers, adapter_name="bench")
        cast_training_params(layers, dtype=torch.float32)  # fp32 weights to train, as diffusers' scripts do

        return lambda: unwrap_peft(layers, names)
    return attach


VARIANTS = {
    "lowdim LoRA r=1": lowdim_variant("lora", rank=1),
    "lowdim LoRA r=4": lowdim_variant("lora", rank=4),
    "lowdim LiDB r=1": lowdim_variant("lidb", a=6, b=4),
    "peft LoRA r=1": peft_variant(1),
    "peft LoRA r=4": peft_variant(4),
}


def train_step(layers: nn.ModuleDict, inputs: list[torch.Tensor]) -> None:
    """The engine's way: one forward inside stacked_factors (a no-op for peft's layers), then backward."""
    with stacked_factors(layers):
        total = sum(layer(x).float().sum() for layer, x in zip(layers.values(), inputs, strict=True))
    total.backward()
    for param in layers.parameters():
        param.grad = None


@torch.no_grad()
def call(layers: nn.ModuleDict, inputs: list[torch.Tensor]) -> None:
    for layer, x in zip(layers.values(), inputs, strict=True):
        layer(x)


def measure(rounds: int, repeats: int, shapes: list[tuple[int, int]]) -> dict[str, dict[str, float]]:
    layers = build(shapes)
    inputs = [torch.randn(2, 4, i, dtype=torch.bfloat16) for i, _ in shapes]
    best: dict[str, dict[str, float]] = {name: {"step": float("inf"), "call": float("inf")} for name in VARIANTS}
    for _ in range(rounds):
        for name, attach in VARIANTS.items():
            detach = attach(layers)
            try:
                for kind, run in (("step", train_step), ("call", call)):
                    run(layers, inputs)  # warm: kept factors, frozen stacks, allocator
                    start = time.perf_counter()
                    for _ in range(repeats):
                        run(layers, inputs)
                    best[name][kind] = min(best[name][kind], (time.perf_counter() - start) / repeats)
            finally:
                detach()
    return best


OPTIMIZERS = {  # torch's AdamW as each update path runs it; the engine asks for the fused one (make_optimizer)
    "AdamW, one kernel (fused; the engine's)": {"fused": True},
    "AdamW, multi-tensor (foreach; torch's GPU default)": {"foreach": True},
    "AdamW, one parameter at a time (torch's CPU default)": {"foreach": False},
}


def measure_updates(rounds: int, repeats: int, shapes: list[tuple[int, int]]) -> dict[str, float]:
    """Seconds of one AdamW update of the LoRA r=4 tensors of ``shapes`` (two per layer), fastest round."""
    layers = build(shapes)
    lowdim_variant("lora", rank=4)(layers)
    params = lowdim.Adapters(layers).parameters("bench")
    for param in params:
        param.grad = torch.randn_like(param)
    best = dict.fromkeys(OPTIMIZERS, float("inf"))
    for _ in range(rounds):
        for name, options in OPTIMIZERS.items():
            optimizer = torch.optim.AdamW(params, lr=1e-4, **options)
            optimizer.step()  # warm: its state exists
            start = time.perf_counter()
            for _ in range(repeats):
                optimizer.step()
            best[name] = min(best[name], (time.perf_counter() - start) / repeats)
    return best


def report_updates(best: dict[str, float], tensors: int) -> str:
    fused = best["AdamW, one kernel (fused; the engine's)"]
    lines = [f"\nms per AdamW update of {tensors} LoRA r=4 tensors (fastest round)\n",
             "| update | ms | / one kernel |", "|---|---:|---:|"]
    return "\n".join(lines + [f"| {name} | {value * 1e3:.2f} | {value / fused:.1f} |" for name, value in best.items()])


def report(best: dict[str, dict[str, float]], layers: int) -> str:
    lines = [f"{layers} adapted bf16 layers, fp32 adapter weights, torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s); ms per train step and per call (fastest round)\n",
             "| adapter | train step | call |", "|---|---:|---:|"]
    lines += [f"| {name} | {times['step'] * 1e3:.2f} | {times['call'] * 1e3:.2f} |" for name, times in best.items()]
    ratios = {
        "LiDB / LoRA r=1, step (goal ≤ 1.10)": best["lowdim LiDB r=1"]["step"] / best["lowdim LoRA r=1"]["step"],
        "lowdim / peft, r=1 step": best["lowdim LoRA r=1"]["step"] / best["peft LoRA r=1"]["step"],
        "lowdim / peft, r=4 step": best["lowdim LoRA r=4"]["step"] / best["peft LoRA r=4"]["step"],
        "lowdim / peft, r=4 call": best["lowdim LoRA r=4"]["call"] / best["peft LoRA r=4"]["call"],
    }
    lines += ["", "| ratio | value |", "|---|---:|"] + [f"| {name} | {value:.2f} |" for name, value in ratios.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="19 layers and 2 rounds: checks that it runs")
    parser.add_argument("--rounds", type=int, default=None, help="rounds over all adapters (default 7)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one host thread, as a GPU step's
    shapes = layer_shapes(scale=8 if args.quick else 1)
    rounds = args.rounds or (2 if args.quick else 7)
    repeats = 2 if args.quick else 10
    print(report(measure(rounds, repeats, shapes), len(shapes)))
    print(report_updates(measure_updates(rounds, repeats, shapes), 2 * len(shapes)))


if __name__ == "__main__":
    main()
