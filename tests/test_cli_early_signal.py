"""A Ctrl-C or SIGTERM while the `lowdim` script is still importing its commands (before any run starts, the
first tenth of a second or so): one line and status 130, as a later stop, never a KeyboardInterrupt traceback
or a death by the signal with nothing said.

The signal is sent from inside the import of a module the commands need (a meta-path hook in a
``sitecustomize`` the child finds first), so it lands at the same place on every run, however fast the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

EARLY_LINE = "Interrupted before the command started; nothing was written."
# In the child's sitecustomize: send the signal named by LOWDIM_TEST_SIGNAL to itself as the module named by
# LOWDIM_TEST_SIGNAL_AT starts to import (once).
HOOK = """
import importlib.abc, os, signal, sys

class SignalAtImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == os.environ.get("LOWDIM_TEST_SIGNAL_AT"):
            sys.meta_path.remove(self)
            os.kill(os.getpid(), getattr(signal, os.environ["LOWDIM_TEST_SIGNAL"]))
        return None

sys.meta_path.insert(0, SignalAtImport())
"""


def console_script() -> str:
    """What the installed `lowdim` script runs, as pip's wrapper runs it: ``from MODULE import NAME; NAME()``."""
    (found,) = [entry for entry in entry_points(group="console_scripts") if entry.name == "lowdim"]
    module, name = found.value.split(":")
    return f"import sys; sys.argv[0] = 'lowdim'; from {module} import {name}; sys.exit({name}())"


def run_with_signal(tmp_path: Path, signum: str, at: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "LOWDIM_TEST_SIGNAL": signum, "LOWDIM_TEST_SIGNAL_AT": at, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", console_script(), *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("at", ["typer", "lowdim_cli.personalize_command"])
def test_a_signal_while_the_commands_import_is_one_line_and_130(tmp_path, signum, at):
    done = run_with_signal(tmp_path, signum, at, "train", "-m", "tinyfaces", "-i", "face.png", "--out", "o")
    assert (done.returncode, done.stderr.strip(), done.stdout) == (130, EARLY_LINE, ""), done.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sitecustomize.py"]  # nothing written


def test_the_hook_fires_where_the_test_says(tmp_path):
    """Without the signal asked, the same child runs to the command (so the hook alone changes nothing)."""
    done = run_with_signal(tmp_path, "SIGINT", "no-such-module", "--version")
    assert done.returncode == 0 and "Traceback" not in done.stderr


def test_importing_the_cli_installs_no_handler():
    """A program (or a test) that imports the CLI keeps its own signal handling: only the script installs any."""
    check = ("import signal, lowdim_cli.entry, lowdim_cli.main; "
             "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
             "signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.stdout.split() == ["True", "True"], done.stderr[-2000:]


def test_the_commands_own_handlers_replace_the_early_ones(monkeypatch):
    """Once a command runs, a signal is its stop (checkpoint and line), not the early line: ``stop_on_signals``
    takes over both signals from the early handlers, SIGINT included."""
    from lowdim_cli import entry, errors

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # stop_on_signals replaces it
    try:
        entry.stop_early_on_signals()
        assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is entry.early_stop
        errors.stop_on_signals()
        assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is not entry.early_stop
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_a_background_job_goes_on_ignoring_ctrl_c():
    """`lowdim train ... &` in a shell script starts with SIGINT ignored: neither the early handlers nor the
    command's take it up."""
    check = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); from lowdim_cli import entry, errors; "
             "entry.stop_early_on_signals(); print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN); "
             "errors.stop_on_signals(); print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.stdout.split() == ["True", "True"], done.stderr[-2000:]
