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
from dataclasses import dataclass

import torch
from torch import nn

import lowdim
from lowdim_sd.architecture import LAYER_SETS, build_components
from lowdim_sd.bench.speed_timing import side_by_side
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


@dataclass
class Variants:
    """The frozen base UNet and its three adapted copies, with the batch they all run on."""

    base: nn.ModuleDict
    lora: nn.ModuleDict
    lidb: nn.ModuleDict
    merged: nn.ModuleDict  # the LiDB copy with its adapter merged into the base weights
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    layers: int
    lora_params: int
    lidb_params: int
    clamped: int  # LiDB layers whose a or b the tiny UNet's widths cut down


def build_variants(batch: int) -> Variants:
    base = build_unet(0)
    lora = copy.deepcopy(base)
    lora_adapters = lowdim.inject(lora, lowdim.get_space("lora", rank=1), LAYER_SETS["unet"], seed=0)
    lidb = copy.deepcopy(base)
    lidb_space = lowdim.get_space("lidb", a=100, b=50, rank=1, init="gaussian")  # nonzero ΔW, so merge matters
    lidb_adapters = lowdim.inject(lidb, lidb_space, LAYER_SETS["unet"], seed=0)
    merged = copy.deepcopy(lidb)
    lowdim.Adapters(merged).merge("default")
    return Variants(
        base, lora, lidb, merged, make_inputs(batch),
        layers=len(lora_adapters.slots("default")),
        lora_params=lora_adapters.info("default").num_params,
        lidb_params=lidb_adapters.info("default").num_params,
        clamped=len(lidb_adapters.info("default").notes),
    )


def merge_check(variants: Variants) -> tuple[float, float]:
    """Max |merged − unmerged| output, and max |unmerged − base| (what the adapter changes) for scale."""
    latents, timesteps, text = variants.inputs
    with torch.no_grad():
        out = {
            name: getattr(variants, name)["unet"](latents, timesteps, encoder_hidden_states=text).sample
            for name in ("base", "lidb", "merged")
        }
    return (out["merged"] - out["lidb"]).abs().max().item(), (out["lidb"] - out["base"]).abs().max().item()


def _nothing() -> None:
    """The teardown of a variant that needs none: every model here is built once, before any timing."""


def interleaved_ms(fns: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of each function: one call per variant per round, the order rotating each round,
    so consecutive samples of two variants are back to back (what the paired ratios rely on)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    setups = {name: (lambda fn=fn: (fn, _nothing)) for name, fn in fns.items()}
    seconds = side_by_side(setups, torch.device("cpu"), rounds=repeats, repeats=1, warmup=0)
    return {name: [s * 1e3 for s in values] for name, values in seconds.items()}


def measure(variants: Variants, repeats: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Train-step and inference milliseconds of every variant."""
    inputs = variants.inputs
    steps = {name: train_step_fn(getattr(variants, model), inputs)
             for name, model in (("base", "base"), ("lora_r1", "lora"), ("lidb", "lidb"))}
    inference = {name: infer_fn(getattr(variants, model), inputs)
                 for name, model in (("base", "base"), ("lidb_unmerged", "lidb"), ("lidb_merged", "merged"))}
    return interleaved_ms(steps, repeats, warmup), interleaved_ms(inference, repeats, warmup)


def paired(times: dict[str, list[float]], num: str, den: str) -> float:
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}–{values[0]:.1f}"
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.1f}–{q[2]:.1f}"


RATIOS = [  # (label, table, numerator, denominator)
    ("step LiDB / LoRA r=1 (goal ≤ 1.10)", "step", "lidb", "lora_r1"),
    ("step LiDB / base", "step", "lidb", "base"),
    ("step LoRA r=1 / base", "step", "lora_r1", "base"),
    ("inference LiDB unmerged / base", "infer", "lidb_unmerged", "base"),
    ("inference LiDB merged / base (goal ≈ 1.00)", "infer", "lidb_merged", "base"),
]


def machine_lines(variants: Variants, args: argparse.Namespace) -> list[str]:
    base_params = sum(p.numel() for p in variants.base.parameters()) / 1e6
    return [
        f"command: {shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}",
        f"torch {torch.__version__}, {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}",
        f"UNet {base_params:.2f}M params; batch {args.batch}: latents {tuple(variants.inputs[0].shape)}, "
        f"text states {tuple(variants.inputs[2].shape)}; {variants.layers} adapted layers (LAYER_SETS['unet']); "
        f"LoRA r=1 {variants.lora_params} params, LiDB a=100 b=50 r=1 {variants.lidb_params} params "
        f"({variants.clamped} layers clamped)",
    ]


def table_lines(tables: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = ["| measurement | variant | median ms | p25–p75 ms |", "|---|---|---:|---:|"]
    for kind, label in (("step", "train step (fwd+bwd)"), ("infer", "inference (no grad)")):
        for name, values in tables[kind].items():
            lines.append(f"| {label} | {name} | {statistics.median(values):.1f} | {spread(values)} |")
    lines += ["", "| ratio | of medians | paired median |", "|---|---:|---:|"]
    for label, kind, num, den in RATIOS:
        table = tables[kind]
        of_medians = statistics.median(table[num]) / statistics.median(table[den])
        lines.append(f"| {label} | {of_medians:.3f} | {paired(table, num, den):.3f} |")
    goal = statistics.median(tables["step"]["lidb"]) / statistics.median(tables["step"]["lora_r1"])
    lines += ["", f"goal LiDB step ≤ 1.10 × LoRA r=1: {'MET' if goal <= 1.10 else 'NOT MET'} ({goal:.3f})"]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=60, help="timed rounds per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds per variant first")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = build_variants(args.batch)
    merge_error, adapter_effect = merge_check(variants)
    start = time.perf_counter()
    step_times, infer_times = measure(variants, args.repeats, args.warmup)
    elapsed = time.perf_counter() - start
    lines = machine_lines(variants, args) + [
        f"repeats {args.repeats} (warmup {args.warmup}), round-robin; timing took {elapsed:.1f} s",
        f"merge check: max |merged − unmerged| = {merge_error:.2e} (adapter effect {adapter_effect:.2e})",
        "",
        *table_lines({"step": step_times, "infer": infer_times}),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
