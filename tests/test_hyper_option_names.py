"""A refused HyperConfig option is named as its reader gave it: the train-hypernet flag under the ``lowdim``
command (``--heads``, ``--set feedforward`` for one without a flag of its own; the command's code names its flags
with ``options_named``), the field from Python (``HyperConfig(attention_heads=...)``), never the other's words."""

from __future__ import annotations

import contextlib

import pytest

from lowdim.errors import ConfigError
from lowdim.hyper import HyperConfig
from lowdim.hyper.config import options_named
from lowdim.option_words import command_line
from lowdim_sd.hypertrain_words import hyper_flag


def train_hypernets_command_line():
    """What train-hypernet's code runs in under the ``lowdim`` command."""
    stack = contextlib.ExitStack()
    stack.enter_context(command_line())
    stack.enter_context(options_named(hyper_flag))
    return stack

# (option, bad value, the flag train-hypernet takes it by)
COUNTS = [("iterations", 0, "--iterations"), ("width", 0, "--width"), ("decoder_layers", 0, "--decoder-layers"),
          ("attention_heads", 0, "--heads")]


@pytest.mark.parametrize(("field", "value", "flag"), COUNTS)
def test_a_count_below_one_names_the_flag_on_the_command_line(field, value, flag):
    with train_hypernets_command_line(), pytest.raises(ConfigError) as refused:
        HyperConfig.from_dict({field: value})
    assert str(refused.value) == f"{flag} must be an integer >= 1, got {value}"


@pytest.mark.parametrize(("field", "value", "flag"), COUNTS)
def test_a_count_below_one_names_the_field_from_python(field, value, flag):
    with pytest.raises(ConfigError) as refused:
        HyperConfig.from_dict({field: value})
    assert str(refused.value) == f"HyperConfig({field}=...) must be an integer >= 1, got {value}"
    assert flag not in str(refused.value)


def test_heads_that_do_not_divide_the_width_name_both_options_as_given():
    with train_hypernets_command_line(), \
            pytest.raises(ConfigError, match=r"^--heads \(3\) must divide --width \(16\)$"):
        HyperConfig.from_dict({"width": 16, "attention_heads": 3})
    with pytest.raises(ConfigError, match=r"^HyperConfig\(attention_heads=\.\.\.\) \(3\) must divide "
                                          r"HyperConfig\(width=\.\.\.\) \(16\)$"):
        HyperConfig.from_dict({"width": 16, "attention_heads": 3})


def test_an_option_without_a_flag_of_its_own_is_named_as_set_on_the_command_line():
    with train_hypernets_command_line(), \
            pytest.raises(ConfigError, match=r"^--set feedforward must be None or an integer >= 1"):
        HyperConfig.from_dict({"feedforward": 0})
    with pytest.raises(ConfigError, match=r"^HyperConfig\(dropout=\.\.\.\) must be in \[0, 1\), got 1\.5$"):
        HyperConfig.from_dict({"dropout": 1.5})


def test_the_flags_are_those_train_hypernet_takes():
    """The words must be flags a user can type: each is an option of the train-hypernet command."""
    import typer.main

    from lowdim_cli.main import app
    from lowdim_sd.hypertrain_words import HYPER_FLAGS

    command = typer.main.get_command(app).commands["train-hypernet"]  # type: ignore[attr-defined]
    typed = {spelling for parameter in command.params for spelling in parameter.opts}
    assert set(HYPER_FLAGS.values()) <= typed
