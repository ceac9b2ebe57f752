"""benchmarks/speed_gpu.sh runs in one device call of 560 s: every step after measuring takes only what is left
of the script's TOTAL_SECONDS (540), so the device tool never cuts the profile and the "total" line is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lowdim_sd.bench.speed import SpeedJob, run_speed

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "speed_gpu.sh"


def test_the_header_states_the_budget_the_script_keeps():
    header = SCRIPT.read_text()
    assert "at most 9 minutes" in header and "timeout_s 560" in header and "TOTAL_SECONDS:-540" in header
    assert "8 minutes" not in header


@pytest.mark.slow
def test_with_no_time_left_the_profile_is_skipped_and_the_table_still_comes_back(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # a folder a first call measured: the saved model is there, so only the time left can stop the profile
        run_speed(SpeedJob(out=work, quick=True, device="cpu", only=("load",)), progress=False)
    finally:
        torch.set_num_threads(threads)
    # As a run cut short before its table leaves it (and a fresh machine's WORK holds none): the table that comes
    # back must be made by the script from measurements/, not copied from an earlier run.
    (work / "speed.json").unlink()
    (work / "table.md").unlink()
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "WORK": str(work), "TOTAL_SECONDS": "15",
           "ARGS": "--quick --device cpu", "ARGS_PROFILE": "--device cpu --dtype fp32", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = (out / "log.txt").read_text()
    assert "measuring skipped" in log and "profile skipped" in log and "s of the call's 15 left" in log
    assert not (out / "profile.txt").exists() and not (out / "first_run.txt").exists()
    assert {"speed.json", "table.md", "measurements.tgz", "gpu.txt"} <= {path.name for path in out.iterdir()}
    assert log.splitlines()[-1].startswith("total ")
