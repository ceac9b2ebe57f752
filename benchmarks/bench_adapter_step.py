"""Step time of a tiny SD-architecture UNet with no adapter, LoRA r=1 and LiDB (a=100, b=50, r=1).

Not a test: a script that prints a table. Run from the repository root:

    python benchmarks/bench_adapter_step.py            # defaults: --repeats 60 --warmup 5

What it measures, on a UNet built in-process from a small config (no download):

* TRAIN STEP: forward + backward of the UNet on a batch of latents and text states. The base
  weights are frozen in every variant; the latents require grad in every variant, so the
  no-adapter baseline also runs a full backward pass (w.r.t. the input) and the three variants
  are comparable. Adapters cover the paper's UNet layer set: self- and cross-attention
  q, k, v, out (``lowdim_sd.architecture.LAYER_SETS["unet"]``).
* INFERENCE: forward under ``torch.no_grad`` with no adapter, LiDB unmerged, LiDB merged
  (``Adapters.merge``): merging should make the adapter free.

Variants are interleaved round-robin (the order rotates each repeat) after a warmup, and the
median of the repeats is reported, so machine noise hits all variants alike. "paired" ratios
are the median of per-repeat ratios between variants timed back to back.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

import lowdim
from lowdim_sd.architecture import LAYER_SETS, build_components
from lowdim_sd.tiny import TINY_UNET

# The tests' tiny UNet, at 16x16 latents and a 64-wide text encoder.
UNET_CONFIG = {**TINY_UNET, "sample_size": 16, "cross_attention_dim": 64}
TEXT_CONFIG = {
    "vocab_size": 1000,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 77,
    "pad_token_id": 1,  # CLIP's defaults (49406/49407) lie outside this tiny vocabulary
    "bos_token_id": 0,
    "eos_token_id": 2,
}


def build_unet(seed: int = 0) -> nn.ModuleDict:
    """A frozen tiny UNet under the name 'unet', so the SD layer-set patterns ('unet.*...') apply."""
    torch.manual_seed(seed)
    unet = build_components(UNET_CONFIG, TEXT_CONFIG)["unet"]
    unet.requires_grad_(False)
    return nn.ModuleDict({"unet": unet}).eval()


def make_inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    size = UNET_CONFIG["sample_size"]
    latents = torch.randn(batch, UNET_CONFIG["in_channels"], size, size, generator=generator)
    text = torch.randn(
        batch, TEXT_CONFIG["max_position_embeddings"], UNET_CONFIG["cross_attention_dim"], generator=generator
    )
    timesteps = torch.randint(0, 1000, (batch,), generator=generator)
    return latents, timesteps, text


def train_step_fn(model: nn.ModuleDict, inputs: tuple) -> Callable[[], None]:
    latents, timesteps, text = inputs
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        x = latents.detach().requires_grad_(True)
        out = model["unet"](x, timesteps, encoder_hidden_states=text).sample
        out.float().pow(2).mean().backward()
        for p in params:  # what optimizer.zero_grad(set_to_none=True) does
            p.grad = None

    return step


def infer_fn(model: nn.ModuleDict, inputs: tuple) -> Callable[[], None]:
    latents, timesteps, text = inputs

    def forward() -> None:
        with torch.no_grad():
            model["unet"](latents, timesteps, encoder_hidden_states=text)

    return forward


def timed(fns: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of each function, interleaved round-robin, rotating the order."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def paired(times: dict[str, list[float]], num: str, den: str) -> float:
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=60, help="timed rounds per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds per variant first")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    base = build_unet(0)
    lora = copy.deepcopy(base)
    lora_adapters = lowdim.inject(lora, lowdim.get_space("lora", rank=1), LAYER_SETS["unet"], seed=0)
    lidb = copy.deepcopy(base)
    lidb_space = lowdim.get_space("lidb", a=100, b=50, rank=1, init="gaussian")  # nonzero ΔW, so merge matters
    lidb_adapters = lowdim.inject(lidb, lidb_space, LAYER_SETS["unet"], seed=0)
    merged = copy.deepcopy(lidb)
    lowdim.Adapters(merged).merge("default")

    inputs = make_inputs(args.batch)
    with torch.no_grad():  # sanity: merging must not change the function
        out_unmerged = lidb["unet"](inputs[0], inputs[1], encoder_hidden_states=inputs[2]).sample
        out_merged = merged["unet"](inputs[0], inputs[1], encoder_hidden_states=inputs[2]).sample
        out_base = base["unet"](inputs[0], inputs[1], encoder_hidden_states=inputs[2]).sample
    merge_error = (out_merged - out_unmerged).abs().max().item()
    adapter_effect = (out_unmerged - out_base).abs().max().item()

    layers = len(lora_adapters.slots("default"))
    lora_params = lora_adapters.info("default").num_params
    lidb_params = lidb_adapters.info("default").num_params
    clamped = len(lidb_adapters.info("default").notes)

    start = time.perf_counter()
    step_times = timed(
        {
            "base": train_step_fn(base, inputs),
            "lora_r1": train_step_fn(lora, inputs),
            "lidb": train_step_fn(lidb, inputs),
        },
        args.repeats,
        args.warmup,
    )
    infer_times = timed(
        {
            "base": infer_fn(base, inputs),
            "lidb_unmerged": infer_fn(lidb, inputs),
            "lidb_merged": infer_fn(merged, inputs),
        },
        args.repeats,
        args.warmup,
    )
    elapsed = time.perf_counter() - start

    med = {f"step/{k}": statistics.median(v) for k, v in step_times.items()}
    med.update({f"infer/{k}": statistics.median(v) for k, v in infer_times.items()})

    def spread(values: list[float]) -> str:
        q = statistics.quantiles(values, n=4)
        return f"{q[0]:.1f}–{q[2]:.1f}"

    print(f"command: {shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}"
    )
    print(
        f"UNet {sum(p.numel() for p in base.parameters()) / 1e6:.2f}M params; batch {args.batch}: latents "
        f"{tuple(inputs[0].shape)}, text states {tuple(inputs[2].shape)}; {layers} adapted layers "
        f"(LAYER_SETS['unet']); LoRA r=1 {lora_params} params, LiDB a=100 b=50 r=1 {lidb_params} params "
        f"({clamped} layers clamped)"
    )
    print(f"repeats {args.repeats} (warmup {args.warmup}), round-robin; timing took {elapsed:.1f} s")
    print(f"merge check: max |merged − unmerged| = {merge_error:.2e} (adapter effect {adapter_effect:.2e})")
    print()
    print("| measurement | variant | median ms | p25–p75 ms |")
    print("|---|---|---:|---:|")
    for kind, table in (("train step (fwd+bwd)", step_times), ("inference (no grad)", infer_times)):
        for name, values in table.items():
            print(f"| {kind} | {name} | {statistics.median(values):.1f} | {spread(values)} |")
    print()
    print("| ratio | of medians | paired median |")
    print("|---|---:|---:|")
    ratios = [
        ("step LiDB / LoRA r=1 (goal ≤ 1.10)", step_times, "lidb", "lora_r1"),
        ("step LiDB / base", step_times, "lidb", "base"),
        ("step LoRA r=1 / base", step_times, "lora_r1", "base"),
        ("inference LiDB unmerged / base", infer_times, "lidb_unmerged", "base"),
        ("inference LiDB merged / base (goal ≈ 1.00)", infer_times, "lidb_merged", "base"),
    ]
    for label, table, num, den in ratios:
        of_medians = statistics.median(table[num]) / statistics.median(table[den])
        print(f"| {label} | {of_medians:.3f} | {paired(table, num, den):.3f} |")
    goal = med["step/lidb"] / med["step/lora_r1"]
    print()
    print(f"goal LiDB step ≤ 1.10 × LoRA r=1: {'MET' if goal <= 1.10 else 'NOT MET'} ({goal:.3f})")


if __name__ == "__main__":
    main()
