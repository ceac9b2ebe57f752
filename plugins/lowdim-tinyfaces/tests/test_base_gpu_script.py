"""benchmarks/base_gpu.sh, the prepared GPU run that trains the TinyFaces base model further, at a tiny
scale on the CPU: a GPU session must not spend its minutes finding out that the script is broken."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

REPO = Path(__file__).resolve().parents[3]


def _call(tmp_path: Path, minutes: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"),
           "MINUTES": minutes, "BATCH": "4", "DEVICE": "cpu", "THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "benchmarks/base_gpu.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_the_gpu_script_returns_a_loadable_model_that_a_second_call_would_continue(tmp_path):
    done = _call(tmp_path, "3.52")  # train_model holds 3.5 minutes back for the export: 1.2 s of steps
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == ["final_pipeline.png", "gpu.txt", "log.txt",
                                                           "model.tar", "train.log"]
    assert out.joinpath("model.tar").stat().st_size < 16 * 2**20  # the device tool returns files up to 16 MiB
    with tarfile.open(out / "model.tar") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    from lowdim_tinyfaces.model_files import not_a_model_folder

    assert not_a_model_folder(tmp_path / "back" / "model") is None
    # A second call on the same warm machine resumes from this checkpoint: train_model's own resume is
    # tested in test_train_resume.py, so here only that the script asks for it and left the checkpoint.
    script = REPO.joinpath("benchmarks/base_gpu.sh").read_text()
    assert re.search(r"^\$PY -m lowdim_tinyfaces\.train_model [^\n]*--resume", script, re.MULTILINE)
    assert json.loads((tmp_path / "work" / "run" / "unet.json").read_text())["step"] > 0
