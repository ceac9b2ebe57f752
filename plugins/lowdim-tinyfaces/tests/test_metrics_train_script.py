"""The metric models' training script (``python -m lowdim_tinyfaces.metrics.train``): its files, not its training."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from lowdim_tinyfaces.metrics import train

SKIP_TRAINING = ["--skip-style", "--skip-identity"]


def _fail_writes_past_64_bytes() -> None:
    # The OS refuses the report's write part-way, as a full disk would; ignoring SIGXFSZ makes that an error.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))


def test_a_failed_report_write_keeps_the_previous_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    previous = out / "report_partial.json"
    previous.write_text('{"old": true}\n')
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lowdim_tinyfaces.metrics.train", "--out", str(out),
               "--weights-dir", str(tmp_path / "weights"), *SKIP_TRAINING]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                            preexec_fn=_fail_writes_past_64_bytes)
    assert result.returncode != 0, result.stdout + result.stderr
    assert json.loads(previous.read_text()) == {"old": True}


def test_the_report_is_written_and_the_log_file_closed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The file's last reference goes when main returns: CPython warns then, no collection needed (one in a
        # worker that has held many models took 12 s).
        train.main(["--out", str(out), "--threads", str(torch.get_num_threads()), *SKIP_TRAINING])
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
    report = json.loads((out / "report_partial.json").read_text())
    assert report["args"]["skip_style"] == "True"
    assert "style" not in report and "identity" not in report
