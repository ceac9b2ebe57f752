"""benchmarks/speed_gpu.sh, the prepared GPU run of issue 18's speed suite, at the quick scale on the CPU:
a GPU session must not spend its minutes finding out that the script is broken.

The script runs in one device call of 560 s: every step after measuring takes only what is left of its
TOTAL_SECONDS (540), so the device tool never cuts the profile and the "total" line is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "speed_gpu.sh"


def test_the_header_states_the_budget_the_script_keeps():
    header = SCRIPT.read_text()
    assert "at most 9 minutes" in header and "timeout_s 560" in header and "TOTAL_SECONDS:-540" in header
    assert "8 minutes" not in header


def call(work: Path, out: Path, **settings: str) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "WORK": str(work),
           "ARGS_PROFILE": "--device cpu --dtype fp32", "OMP_NUM_THREADS": "1", **settings}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """A first call's folders, the script run whole: two of the suite's tasks (every task's quick run is
    test_bench_speed.py's; this checks the script's wiring)."""
    root = tmp_path_factory.mktemp("speed-gpu")
    call(root / "work", root / "out", ARGS="--quick --device cpu --only load,merge")
    return root


@pytest.mark.slow
def test_the_gpu_script_brings_back_the_table_the_profile_and_the_first_run_comparison(measured):
    out = measured / "out"
    assert sorted(path.name for path in out.iterdir()) == ["first_run.txt", "gpu.txt", "log.txt", "measurements.tgz",
                                                           "profile.txt", "speed.json", "table.md"]
    assert json.loads((out / "speed.json").read_text())
    versions = (out / "gpu.txt").read_text().splitlines()  # what the measurements ran with, as imported
    assert any(line.startswith("torch ") and " diffusers " in line and " peft " in line for line in versions)
    assert "merge (warm)" in (out / "profile.txt").read_text()
    runs = [line for line in (out / "first_run.txt").read_text().splitlines() if "one-time set-up" in line]
    assert [line.split(":")[0] for line in runs] == ["defaults", "TORCH_CUDNN_USE_HEURISTIC_MODE_B=1"]


@pytest.mark.slow
def test_with_no_time_left_the_profile_is_skipped_and_the_table_still_comes_back(measured, tmp_path):
    # The first call's folder: its saved model is there, so only the time left can stop the profile. As a run cut
    # short before its table leaves it (and a fresh machine's WORK holds none), the table that comes back must be
    # made by the script from measurements/, not copied from an earlier run. The first call recorded the
    # versions by importing the packages: this one leaves that out (RECORD_VERSIONS=0), a process less.
    work, out = measured / "work", tmp_path / "out"
    (work / "speed.json").unlink()
    (work / "table.md").unlink()
    call(work, out, TOTAL_SECONDS="15", ARGS="--quick --device cpu", RECORD_VERSIONS="0")
    log = (out / "log.txt").read_text()
    assert "measuring skipped" in log and "profile skipped" in log and "s of the call's 15 left" in log
    assert not (out / "profile.txt").exists() and not (out / "first_run.txt").exists()
    assert {"speed.json", "table.md", "measurements.tgz", "gpu.txt"} <= {path.name for path in out.iterdir()}
    assert json.loads((out / "speed.json").read_text())
    assert not any(line.startswith("torch ") for line in (out / "gpu.txt").read_text().splitlines())
    assert log.splitlines()[-1].startswith("total ")
