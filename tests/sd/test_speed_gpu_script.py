"""benchmarks/speed_gpu.sh, the prepared GPU run of issue 18's speed suite, at the quick scale on the CPU:
a GPU session must not spend its minutes finding out that the script is broken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_script_brings_back_the_table_the_profile_and_the_first_run_comparison(tmp_path):
    # Two of the suite's tasks: every task's quick run is test_bench_speed.py's; this checks the script's wiring.
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"),
           "ARGS": "--quick --device cpu --only load,merge", "ARGS_PROFILE": "--device cpu --dtype fp32",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/speed_gpu.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == ["first_run.txt", "gpu.txt", "log.txt", "measurements.tgz",
                                                           "profile.txt", "speed.json", "table.md"]
    assert json.loads((out / "speed.json").read_text())
    assert "merge (warm)" in (out / "profile.txt").read_text()
    runs = [line for line in (out / "first_run.txt").read_text().splitlines() if "one-time set-up" in line]
    assert [line.split(":")[0] for line in runs] == ["defaults", "TORCH_CUDNN_USE_HEURISTIC_MODE_B=1"]
