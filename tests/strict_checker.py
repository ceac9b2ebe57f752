"""mypy as a user's strict type checker runs it on a script, for the tests of what such a checker makes of lowdim
(tests/test_typing_*.py, tests/sd/test_run_signatures.py).

A user's checker follows lowdim into torch, transformers and diffusers, which ship their hints: analysing them
from nothing costs about a minute and a half of CPU, by far the most of a run. Every run here therefore uses the same
flags and one cache, taken in turn (a lock: pytest-xdist's workers are separate processes), so the suite pays that
once; a warm run checks the scripts in seconds. The cache is the project's own (.mypy_cache), whose settings
(pyproject.toml's [tool.mypy]) give every module but lowdim's these flags, so after `python -m mypy` (which .ci/run
runs under the same lock, beside the tests) not even the first run here is cold; they check as Python 3.10, the
oldest lowdim supports. The cache only skips re-analysing modules that have not changed: what a cold run reports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".mypy_cache"
LOCK = CACHE / "taken.lock"  # .ci/run's `flock` takes it too
# A user's strict settings (review AR); lowdim's own modules are followed silently, as an installed package's are.
# --python-version and --ignore-missing-imports: the project's (tests/test_strict_checker_cache.py holds them equal).
FLAGS = ["--strict", "--allow-untyped-calls", "--warn-return-any", "--follow-imports=silent", "--python-version",
         "3.10", "--ignore-missing-imports", "--config-file=", "--cache-dir", str(CACHE)]


def check(*scripts: Path) -> tuple[str, str, int]:
    """mypy's (report, errors, exit status) on ``scripts``, lowdim read from this checkout (MYPYPATH, as the
    README's route has it)."""
    api = pytest.importorskip("mypy.api")
    from filelock import FileLock  # huggingface_hub's dependency, so there wherever diffusers is

    CACHE.mkdir(parents=True, exist_ok=True)  # the lock inside: mypy's .gitignore there keeps it out of git
    with FileLock(str(LOCK)), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MYPYPATH", str(ROOT))
        return api.run([*FLAGS, *map(os.fspath, scripts)])
