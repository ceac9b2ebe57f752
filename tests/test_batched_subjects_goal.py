"""benchmarks/bench_batched_subjects.py states the goal docs/benchmarks.md sets for the K and the device it ran:
≥ 4x at K = 16 on a CPU, at K = 8 on a GPU; any other K is not judged, so a CPU run at K = 8 is no failure."""

from __future__ import annotations

import pytest
import torch
from script_loader import load_script

script = load_script("benchmarks/bench_batched_subjects.py")


@pytest.mark.parametrize("k, device, speedup, said", [
    (16, "cpu", 4.91, "goal ≥ 4x at K=16 on a CPU: met"),
    (16, "cpu", 3.2, "goal ≥ 4x at K=16 on a CPU: NOT met"),
    (8, "cpu", 3.5, "not judged: the goal ≥ 4x is at K=16 on a CPU; K=8 is a GPU goal"),
    (8, "cuda", 5.6, "goal ≥ 4x at K=8 on a GPU: met"),
    (16, "cuda", 10.2, "not judged: the goal ≥ 4x is at K=8 on a GPU; K=16 is a CPU goal"),
    (2, "cpu", 1.9, "not judged: the goal ≥ 4x is at K=16 on a CPU"),
    (8, "mps", 5.0, "not judged: the goals are at K=16 on a CPU and K=8 on a GPU"),
])
def test_the_goal_printed_is_the_one_for_this_k_and_device(k, device, speedup, said):
    assert script.goal_note(k, device, speedup) == said


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the tiny model would load on the GPU")
def test_the_script_prints_the_note_for_the_device_it_ran_on(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["bench_batched_subjects.py", "--subjects", "2", "--steps", "1",
                                     "--repeats", "1"])
    script.main()
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("speed-up"))
    assert line.endswith("(not judged: the goal ≥ 4x is at K=16 on a CPU)")  # this machine has no GPU
