"""benchmarks/count_step_launches.py: the counts docs/benchmarks.md quotes, on the tests' tiny pipeline."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "count_step_launches.py"


def count(argv: list[str]) -> None:
    runpy.run_path(str(SCRIPT))["main"](argv)


def rows(text: str) -> dict[str, list[int]]:
    found = {}
    for line in text.splitlines():
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"[\d,]+", cells[1]):
            found[cells[0]] = [int(cell.replace(",", "")) for cell in cells[1:]]
    return found


def test_a_step_counts_by_part_and_the_finiteness_check_and_the_update_are_a_handful(capsys):
    backward = torch.Tensor.backward
    count(["--quick"])
    table = rows(capsys.readouterr().out)
    assert table["finiteness check"][0] <= 12 < table["UNet forward"][0]
    assert table["AdamW (fused)"][0] <= 6  # one kernel for every parameter, not ten per parameter
    assert table["all"][0] == sum(count for part, (count, *_) in table.items() if part != "all")
    assert torch.Tensor.backward is backward  # the counter put back what it wrapped


def test_lowdim_launches_fewer_than_peft_and_lidb_about_as_many_as_lora(capsys):
    count(["--quick", "--peers"])
    table = rows(capsys.readouterr().out)
    lora, lidb = table["lowdim LoRA r=4 (fp32 weights)"], table["lowdim LiDB a=100 b=50 r=1 (fp32 weights)"]
    lora_r1 = table["lowdim LoRA r=1 (fp32 weights)"]
    peft_half, peft_fp32 = table["peft LoRA r=4, bf16 weights"], table["peft LoRA r=4, fp32 weights"]
    assert lidb[1] == lora[1] < peft_half[1]  # a guided UNet call, factors kept
    assert lora[0] < peft_half[0] < peft_fp32[0]  # a train step: factors made and cast per shape, not per layer
    assert lidb[0] <= 1.05 * lora_r1[0]  # the goal is a LiDB step within 1.10x of LoRA r=1's
