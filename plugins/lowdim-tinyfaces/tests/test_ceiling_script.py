"""benchmarks/tinyfaces_ceiling.py: --help prints usage, and a missing identities folder or index is one line."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from lowdim_tinyfaces.folders import write_identities  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "tinyfaces_ceiling.py"


def run_script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env=env)


def test_help_prints_usage_with_the_default_folder_and_exits_0():
    done = run_script("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tinyfaces_ceiling.py") and "runs/tinyfaces/heldout" in done.stdout


def test_run_bare_without_the_default_folder_is_one_line_naming_it(tmp_path):
    done = run_script(cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "runs/tinyfaces/heldout" in done.stderr and "tinyfaces-identities" in done.stderr


def test_a_folder_without_its_index_is_one_line_naming_the_index(tmp_path):
    done = run_script(str(tmp_path))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert str(tmp_path / ".identities.json") in done.stderr


@pytest.mark.slow  # the metric models score 6 renders
def test_it_still_scores_a_written_folder(tmp_path, capsys):
    # In this process: the tests above run the script as a command; here only its scoring is at stake, and
    # a subprocess would import torch and diffusers again for it.
    write_identities(tmp_path / "ids", 1, split="test")
    runpy.run_path(str(SCRIPT))["main"]([str(tmp_path / "ids")])
    printed = capsys.readouterr().out
    assert "over 1 identities" in printed
