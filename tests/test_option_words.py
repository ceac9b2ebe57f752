"""Messages name an option as its reader typed it: a flag on the command line, a parameter from Python."""

from __future__ import annotations

import threading

import pytest

from lowdim.errors import LowdimError
from lowdim.option_words import command_line, either, on_the_command_line, option
from lowdim_cli.main import app, main


def test_from_python_an_option_is_its_parameter():
    assert not on_the_command_line()
    assert option("steps", "TrainConfig") == "TrainConfig(steps=...)"
    assert option("crop", "PersonalizeJob", flag="--no-crop") == "PersonalizeJob(crop=...)"
    assert either("leave --token out", "pass token=None") == "pass token=None"


def test_on_the_command_line_an_option_is_its_flag():
    with command_line():
        assert option("save_dtype", "TrainJob") == "--save-dtype"
        assert option("crop", "PersonalizeJob", flag="--no-crop") == "--no-crop"
        assert either("leave --token out", "pass token=None") == "leave --token out"
    assert option("steps", "TrainConfig") == "TrainConfig(steps=...)"  # and back after it


def test_another_thread_speaks_python_unless_given_the_context():
    seen = {}
    with command_line():
        thread = threading.Thread(target=lambda: seen.setdefault("words", option("steps", "TrainConfig")))
        thread.start()
        thread.join()
    assert seen["words"] == "TrainConfig(steps=...)"


@pytest.mark.usefixtures("app_as_it_was")
def test_the_lowdim_command_runs_its_commands_on_the_command_line(capsys):
    @app.command(name="refuse-steps")
    def refuse_steps():
        raise LowdimError(f"{option('steps', 'TrainConfig')} must be >= 1, got 0")

    assert main(["refuse-steps"]) == 1
    assert capsys.readouterr().err.strip() == "Error: --steps must be >= 1, got 0"
