"""benchmarks/host_time.py: the host-time table docs/benchmarks.md quotes, on 19 layers (never a time asserted)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "host_time.py"


@pytest.mark.filterwarnings("error::UserWarning")
def test_every_adapter_and_ratio_gets_a_row_and_nothing_stays_attached(capsys):
    namespace = runpy.run_path(str(SCRIPT))
    threads = torch.get_num_threads()
    try:
        namespace["main"](["--quick"])
    finally:
        torch.set_num_threads(threads)  # the script pins one thread for itself
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.splitlines() if line.startswith("| ")}
    assert set(namespace["VARIANTS"]) <= set(rows)
    assert all(float(cell) > 0 for name in namespace["VARIANTS"] for cell in rows[name])
    assert {"LiDB / LoRA r=1, step (goal ≤ 1.10)", "lowdim / peft, r=4 call"} <= set(rows)
    assert set(namespace["OPTIMIZERS"]) <= set(rows)
    assert all(float(cell) > 0 for name in namespace["OPTIMIZERS"] for cell in rows[name])
    layers = namespace["build"](namespace["layer_shapes"](scale=8))
    for name, attach in namespace["VARIANTS"].items():  # each variant leaves the layers as it found them
        attach(layers)()
        assert all(type(layer) is torch.nn.Linear for layer in layers.values()), name
        assert not hasattr(layers, "peft_config"), name
