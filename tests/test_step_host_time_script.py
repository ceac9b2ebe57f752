"""benchmarks/step_host_time.py: a whole step's host time against the no-adapter floor (never a time asserted)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

import lowdim
from lowdim.injection.layer import AdapterLayer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "step_host_time.py"


@pytest.mark.slow
def test_every_variant_gets_a_row_against_the_floor_and_leaves_the_model_bare(capsys, tmp_path):
    namespace = runpy.run_path(str(SCRIPT))
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # not the one thread the script pins, so a missing hand-back shows
    try:
        # One round of one timed step: the rows, the floor's ratio and the hand-back do not depend on how many
        namespace["main"](["--rounds", "1", "--steps", "1"])
        assert torch.get_num_threads() == threads + 1  # the script pins one thread for itself, then gives them back
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.splitlines() if line.startswith("| ")}
    assert set(namespace["VARIANTS"]) <= set(rows)
    floor = next(iter(namespace["VARIANTS"]))
    assert [cell.strip() for cell in rows[floor][1:]] == ["1.00", "0.0"]
    for name in namespace["VARIANTS"]:
        milliseconds, ratio, share = (float(cell) for cell in rows[name])
        assert milliseconds > 0 and ratio == pytest.approx(milliseconds / float(rows[floor][0]), abs=0.01)
    model = namespace["build_model"](str(tmp_path))
    for name, make in namespace["VARIANTS"].items():  # each variant trains something, then leaves nothing behind
        trainable = make(model)
        assert trainable.parameters and all(p.requires_grad for p in trainable.parameters), name
        namespace["detach_all"](model)
        assert not any(p.requires_grad for p in model.modules.parameters()), name
        assert not lowdim.Adapters(model.modules).names(), name
        assert not any(isinstance(module, AdapterLayer) for module in model.modules.modules()), name
