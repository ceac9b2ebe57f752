"""benchmarks/bench_adapter_size.py: --help says what it measures without building SD1.5, and docs/results.md's
SD1.5 file table agrees with itself (each ratio is its row's bytes over the LiDB fp16 row's and the paper's 120 KB)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]


def test_help_prints_usage_and_builds_nothing(monkeypatch, capsys):
    script = load_script("benchmarks/bench_adapter_size.py")

    def build_refused(*args, **kwargs):
        raise AssertionError("--help built SD1.5 (4.5 GB of RAM)")

    monkeypatch.setattr(script, "build_components", build_refused)
    with pytest.raises(SystemExit) as stopped:
        script.main(["--help"])
    assert stopped.value.code == 0
    said = capsys.readouterr().out
    assert said.startswith("usage: ") and "4.5 GB of RAM" in said


def sd15_file_rows() -> dict[str, tuple[int, str, str]]:
    """The doc's rows: name -> (bytes, vs paper's 120 KB, vs LiDB fp16), the ratios as written."""
    text = (ROOT / "docs" / "results.md").read_text()
    table = text.split("| SD1.5 file | bytes |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        name, size, paper, lidb = (cell.strip() for cell in line.strip("|").split("|"))
        rows[name] = (int(size.replace(",", "")), paper, lidb)
    return rows


def written_as(ratio: float, cell: str) -> bool:
    """Whether ``cell`` ("1,512.5×") is ``ratio`` rounded to the digits the cell shows."""
    digits = cell.rstrip("×").replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return f"{ratio:.{decimals}f}" == digits


def test_the_results_table_ratios_fit_its_own_byte_counts():
    script = load_script("benchmarks/bench_adapter_size.py")
    rows = sd15_file_rows()
    lidb = rows["LiDB a=100 b=50 r=1, fp16, seed-only bases"][0]
    assert len(rows) == 6
    for name, (size, vs_paper, vs_lidb) in rows.items():
        assert written_as(size / script.PAPER_LIDB_BYTES, vs_paper), (name, vs_paper)
        assert written_as(size / lidb, vs_lidb), (name, vs_lidb)
    full = rows["full DreamBooth: UNet + text encoder, fp16"][0]
    claim = re.search(r"room to spare: ([\d,]+)× less than full DreamBooth", (ROOT / "docs" / "results.md").read_text())
    assert int(claim.group(1).replace(",", "")) == round(full / lidb)
