"""benchmarks/bench_adapter_step.py: the adapter step table docs/benchmarks.md quotes (never a time asserted)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_adapter_step.py"


@pytest.fixture(scope="module")
def script() -> dict:
    return runpy.run_path(str(SCRIPT))


def test_every_variant_and_ratio_gets_a_row_and_merging_keeps_the_function(script, capsys):
    threads = torch.get_num_threads()
    try:
        script["main"](["--repeats", "2", "--warmup", "1", "--batch", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| ")]
    timings = {(kind, name): float(median) for kind, name, median, _ in (row for row in rows if len(row) == 4)
               if kind.startswith(("train step", "inference"))}
    assert {name for kind, name in timings if kind.startswith("train")} == {"base", "lora_r1", "lidb"}
    assert {name for kind, name in timings if kind.startswith("inference")} == {"base", "lidb_unmerged", "lidb_merged"}
    assert all(value > 0 for value in timings.values())
    ratios = {row[0]: float(row[1]) for row in rows if len(row) == 3 and row[0] != "ratio"}
    assert {label for label, *_ in script["RATIOS"]} == set(ratios)
    assert all(value > 0 for value in ratios.values())
    merge_line = next(line for line in out.splitlines() if line.startswith("merge check"))
    merge_error = float(merge_line.split("= ")[1].split()[0])
    adapter_effect = float(merge_line.split("effect ")[1].rstrip(")"))
    assert merge_error < 1e-4 < adapter_effect  # the check compares something: the adapter does change the output
    assert "goal LiDB step ≤ 1.10 × LoRA r=1:" in out


def test_variants_alternate_one_call_at_a_time_with_the_order_rotating(script):
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = script["interleaved_ms"](fns, repeats=3, warmup=1)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")  # warmup, then rotating rounds
    assert {name: len(values) for name, values in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_both_adapters_cover_the_same_layers_and_lidb_trains_fewer_numbers(script):
    variants = script["build_variants"](batch=1)
    assert variants.layers == 32  # self- and cross-attention q, k, v, out of the tiny UNet
    assert 0 < variants.lidb_params < variants.lora_params
    assert not any(p.requires_grad for p in variants.base.parameters())
