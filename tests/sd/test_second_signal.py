"""A second Ctrl-C (or SIGTERM) close after the first, as impatient hands press it: the first one's stop still
keeps its checkpoint and says so in its line, and the process still exits 130, not killed by the signal (-2)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
import torch

import lowdim
from lowdim_sd import checkpoints, stopping
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.runs import Interrupted
from lowdim_sd.train import Subject, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = TrainConfig(steps=5, learning_rate=5e-2, augment=False, prompt="a [V] face", checkpoint_every=0)


@pytest.fixture(autouse=True)
def no_stop_left_behind():
    yield
    stopping.withdraw()


def raised(action) -> BaseException | None:
    """What ``action`` raised, a KeyboardInterrupt included (which would end pytest's whole session)."""
    try:
        action()
    except BaseException as error:  # noqa: BLE001
        return error
    return None


def test_a_signal_is_only_noted_while_a_stop_is_handled_and_raises_otherwise():
    with pytest.raises(KeyboardInterrupt):
        stopping.request(signal.SIGINT)  # nothing under way: the first Ctrl-C stops at once
    for handling in (KeyboardInterrupt("first"), Interrupted("interrupted at step 3; ..."),
                     RuntimeError("what the CLI wrapped it in"), OSError("raised while saving the stop's checkpoint")):
        if isinstance(handling, RuntimeError):
            handling.__cause__ = KeyboardInterrupt()
        if isinstance(handling, OSError):  # raised inside the stop's handler: the stop is its context, not cause
            handling.__context__ = KeyboardInterrupt()
        try:
            raise handling
        except BaseException:  # noqa: BLE001 - the stop's own handler, as the engine's and the CLI's are
            stopping.withdraw()
            assert raised(lambda: stopping.request(signal.SIGINT)) is None  # the second one: noted, not raised
        with pytest.raises(KeyboardInterrupt):
            stopping.check()  # kept: a loop that goes on would still stop
    try:
        raise ValueError("not a stop")
    except ValueError:
        with pytest.raises(KeyboardInterrupt):  # handling some other error is no stop under way
            stopping.request(signal.SIGINT)


def test_a_second_signal_during_the_stops_checkpoint_keeps_it_and_its_line(tiny_sd, faces, tmp_path, monkeypatch):
    real_save, real_step, calls = checkpoints.save, torch.optim.AdamW.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            stopping.request(signal.SIGTERM)  # the first: inside the update, so taken up at the next step's check
        return real_step(self, *args, **kwargs)

    def save(*args, **kwargs):
        stopping.request(signal.SIGINT)  # the second, while the stop writes its checkpoint
        return real_save(*args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    monkeypatch.setattr(checkpoints, "save", save)
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    stop = raised(lambda: train(model, [Subject(faces, 0)], trainable, CONFIG, out_dir=tmp_path, progress=False))
    assert isinstance(stop, Interrupted), repr(stop)  # not a bare KeyboardInterrupt, the first one's line lost
    assert re.search(r"at step 3; checkpoint saved to .*step-000003; continue with", str(stop))
    assert checkpoints.latest(tmp_path).name == "step-000003"


def _exit_status(main_body: str) -> subprocess.CompletedProcess:
    """The `lowdim` script with ``main`` replaced by ``main_body``, and a signal as the interpreter winds down."""
    code = f"""
import os, signal, sys, time
import lowdim_cli.main as cli

def main(argv=None):
{main_body}
cli.main = main
real_exit = sys.exit

def exit_late(code):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again while the process winds down
    time.sleep(0.5)
    real_exit(code)

sys.exit = exit_late
cli.script()
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_signal_after_the_commands_line_exits_with_its_status_not_killed_by_it():
    done = _exit_status("    print('done'); return 130")
    assert done.returncode == 130 and done.stdout == "done\n" and "Traceback" not in done.stderr
    escaped = _exit_status("    raise KeyboardInterrupt  # a second signal as main returned")
    assert escaped.returncode == 130 and "Traceback" not in escaped.stderr


def test_from_the_exit_handlers_on_a_signal_is_ignored_not_left_to_pythons_default_action():
    """Python puts a handled signal's default action back late in its teardown (which dies by the signal, -2),
    while torch's teardown may still run; one ignored stays ignored."""
    code = """
import atexit, signal
from lowdim_cli.errors import exit_on_signals, stop_on_signals
stop_on_signals()
exit_on_signals(130)
print(signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler))
atexit._run_exitfuncs()
print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
"""
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert shown.stdout.split() == ["True", "True", "True"], shown.stderr


def test_in_lowdim_ui_a_second_ctrl_c_while_the_job_is_stopping_still_quits_at_once(tmp_path, monkeypatch, capsys):
    """The server's first Ctrl-C is handled outside its except block, so the second one, while the job in flight
    has not reached its next step, is no stop under way: it raises, and the server quits without waiting."""
    from types import SimpleNamespace

    from lowdim_cli import ui_command

    class LoadingStudio:  # a job still loading its model: the wait for its next step is where the second lands
        config = SimpleNamespace(out=tmp_path)

        def close(self, waiting):
            stopping.request(signal.SIGINT)
            raise AssertionError("the second Ctrl-C was absorbed: the server would wait on the job")

    def exit_now(code):
        raise SystemExit(code)

    monkeypatch.setattr(ui_command.os, "_exit", exit_now)
    with pytest.raises(SystemExit) as exited:
        ui_command.close_after_a_stop(page=None, studio=LoadingStudio())
    assert exited.value.code == 130
    assert "Interrupted again: quit without waiting for the job in flight" in capsys.readouterr().err
