"""What the `lowdim` command says when a command fails or is stopped, in the cases review DS found unguarded.

A stop's checkpoint refused by the disk is said with what stands; a declined prompt and a Ctrl-C outside a command
are a stop's line; a bug keeps its traceback; a missing extra is its install line; the script's signal handling
leaves a background job's ignored SIGINT alone and keeps a finalizer's stop quiet; a library's message is said by
its first real line; --help keeps an example's lines.
"""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from test_plugin_commands import run, with_commands
from test_plugins import plugin_module

import lowdim
from lowdim.errors import LowdimError, first_line
from lowdim_cli import errors
from lowdim_cli.main import main
from lowdim_sd import runs

STEP_FOLDER = "o/checkpoints/step-000002"


def _disk_full() -> Path:
    raise OSError(errno.ENOSPC, "No space left on device", STEP_FOLDER)


def _atomic_write_refused() -> Path:  # what lowdim.atomic raises for a full disk: a LowdimError naming the file
    raise LowdimError(f"{STEP_FOLDER}/trainable.safetensors: could not write (No space left on device)")


# ------------------------------------------------------------------- a stop whose checkpoint the disk refused


@pytest.mark.parametrize("save", [_disk_full, _atomic_write_refused], ids=["OSError", "atomic-write"])
def test_a_stop_whose_checkpoint_the_disk_refused_says_so_and_what_stands(save):
    last = Path("o/checkpoints/step-000001")
    note = runs.stop_note(KeyboardInterrupt(), 2, False, save, last=last)
    assert "could not be written" in note and STEP_FOLDER in note and "No space left on device" in note
    assert f"continues from the last periodic one, {last}" in note and "checkpoint saved" not in note


def test_a_stop_whose_only_checkpoint_the_disk_refused_says_nothing_was_kept_and_to_rerun():
    note = runs.stop_note(KeyboardInterrupt(), 2, False, _disk_full, last=None)
    assert "could not be written" in note and "No space left on device" in note
    assert "nothing was kept" in note and "to start over" in note and "continues from" not in note


def test_a_stop_whose_save_hits_a_bug_keeps_the_bug_s_traceback():
    def buggy_save() -> Path:
        raise OSError("a bug's error, with no error number of the OS's")

    with pytest.raises(OSError, match="a bug's error"):
        runs.stop_note(KeyboardInterrupt(), 2, False, buggy_save, last=Path("o/checkpoints/step-000001"))


def _plugin_command(command) -> lowdim.Registry:
    def register_commands(cli):
        cli.command()(command)

    return with_commands(plugin_module("asker", register_commands=register_commands))


def test_a_disk_error_while_a_stop_is_handled_is_said_and_the_exit_is_a_stops(app_as_it_was, capsys):
    def stopping_onto_a_full_disk() -> None:
        """A plugin's command whose Ctrl-C handling writes to a full disk."""
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            _disk_full()

    with lowdim.use_registry(_plugin_command(stopping_onto_a_full_disk)):
        code, said = run(capsys, "stopping-onto-a-full-disk")
    assert code == 130 and "Traceback" not in said
    assert "Interrupted" in said and f"{STEP_FOLDER}: No space left on device" in said, said


# ------------------------------------------------------------------------------- stops outside a run's loop


def test_a_plugin_prompt_the_user_declines_is_a_stops_line_not_a_traceback(app_as_it_was, capsys):
    def wipe() -> None:
        """A plugin's command that asks first (typer.confirm(..., abort=True)); the user said no."""
        raise typer.Abort()

    with lowdim.use_registry(_plugin_command(wipe)):
        code, said = run(capsys, "wipe")
    assert code == 130 and "Interrupted" in said and "Traceback" not in said


def test_a_ctrl_c_in_a_plugin_groups_setup_still_says_interrupted(app_as_it_was, capsys):
    group = typer.Typer()

    @group.callback()
    def setup() -> None:
        """A plugin group's setup, where Typer turns the Ctrl-C into a bare exit code 130."""
        raise KeyboardInterrupt

    @group.command("inner")
    def inner() -> None:
        """A plugin command."""

    def register_commands(cli):
        cli.add_typer(group, name="grp")

    with lowdim.use_registry(with_commands(plugin_module("grouper", register_commands=register_commands))):
        code, said = run(capsys, "grp", "inner")
    assert code == 130 and "Interrupted" in said and "Traceback" not in said, said


# ------------------------------------------------------------------------------- bugs and missing extras


@pytest.mark.parametrize("error", [ValueError("too many values to unpack (expected 2)"),
                                   OSError("bad descriptor in the plugin's own code"),
                                   ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")],
                         ids=["ValueError", "OSError-naming-no-path", "ConnectionResetError"])
def test_a_bug_in_a_command_keeps_its_traceback_and_is_no_user_error_line(app_as_it_was, capsys, error):
    def broken() -> None:
        """A plugin's command with a bug."""
        raise error

    with lowdim.use_registry(_plugin_command(broken)), pytest.raises(type(error)):
        main(["broken"])
    assert "Error:" not in capsys.readouterr().err


@pytest.mark.parametrize(("module", "extra"), [("gradio", "ui"), ("diffusers.pipelines.stable_diffusion", "sd")])
def test_a_missing_module_of_an_extra_is_its_install_line(module, extra):
    line = errors.missing_extra(ModuleNotFoundError(f"No module named '{module}'", name=module))
    assert line is not None and f"pip install 'lowdim[{extra}]'" in line and module in line


# ------------------------------------------------------------------------------- the script's signals


def test_a_background_jobs_ignored_ctrl_c_stays_ignored_as_the_command_winds_down():
    before_int, before_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell's `&` does
        errors.exit_on_signals(0)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)  # SIGTERM still exits at once
    finally:
        signal.signal(signal.SIGINT, before_int)
        signal.signal(signal.SIGTERM, before_term)


FINALIZER_STOP = r"""
from lowdim_cli import errors
errors.stop_on_signals()
class Finalized:
    def __del__(self):
        raise KeyboardInterrupt  # the handler's stop, landing inside a finalizer
Finalized()
import gc; gc.collect()
print("went on")
"""


def test_a_stop_landing_in_a_finalizer_prints_no_exception_ignored_noise():
    done = subprocess.run([sys.executable, "-c", FINALIZER_STOP], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "went on" in done.stdout
    assert "Exception ignored" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr


# ------------------------------------------------------------------------------- the words of a line


@pytest.mark.parametrize("message", ["CUDA out of memory. Tried to allocate 2.00 GiB\nSee the allocator docs",
                                     "\nCUDA out of memory. Tried to allocate 2.00 GiB\n"],
                         ids=["several-lines", "leading-newline"])
def test_an_out_of_memory_message_is_said_by_its_first_real_line(message):
    assert first_line(RuntimeError(message)) == "CUDA out of memory. Tried to allocate 2.00 GiB"


def test_help_joins_prose_but_keeps_an_examples_lines():
    text = errors.reflow("""Train an adapter.

    It writes
    one file.

    Example:
        lowdim train -m tinyfaces -i faces
        lowdim generate -m tinyfaces -a out/adapter.safetensors
    """)
    assert "It writes one file." in text
    assert "    lowdim train -m tinyfaces -i faces\n    lowdim generate" in text, text
