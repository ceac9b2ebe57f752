"""How ``train-hypernet``'s messages name a ``HyperTrainJob`` setting, for the reader at hand: its flag under the
``lowdim`` command (``--lr``), ``HyperTrainJob(learning_rate=...)`` from Python (``lowdim.option_words``). One
place for the checks, the retrieval head's fill and the loop alike."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from lowdim.hyper.config import options_named
from lowdim.option_words import Wording, either, on_the_command_line, option

Params = ParamSpec("Params")
Result = TypeVar("Result")

OWNER = "HyperTrainJob"
FLAGS = {"learning_rate": "--lr"}  # the fields whose flag is not the field's name with dashes
# A random encoder in place of a pretrained one: the command's --encoder-config tiny is TINY_ENCODER's config.
RANDOM_ENCODER = Wording("--encoder-config tiny", 'hyper={"encoder_config": TINY_ENCODER} (lowdim_sd.hypertrain)')


def name(field: str, flag: str | None = None) -> str:
    """A HyperTrainJob field as this reader gave it: ``--lr`` (or ``flag``) on the command line,
    ``HyperTrainJob(...=...)`` from Python."""
    return option(field, OWNER, flag or FLAGS.get(field))


# The HyperConfig options train-hypernet has a flag of its own for; any other is set with --set KEY=VALUE. HyperConfig's
# own refusals name them so within ``hyper_flags_named``.
HYPER_FLAGS = {"encoder": "--encoder", "encoder_config": "--encoder-config", "iterations": "--iterations",
               "width": "--width", "decoder_layers": "--decoder-layers", "attention_heads": "--heads",
               "freeze_encoder": "--freeze-encoder", "standardize": "--standardize"}
# On/off settings as the command line says each side: (on, off). A HyperConfig switch is off where left out.
SWITCHES = {"augment": ("--augment", "--no-augment"), "all_images": ("--all-images", "no --all-images")}
HYPER_SWITCHES = {"freeze_encoder": ("--freeze-encoder", "no --freeze-encoder"),
                  "standardize": ("--standardize", "no --standardize")}


def hyper_key(key: str) -> str:
    """A HyperConfig option of ``job.hyper``: its flag on the command line (``--set KEY`` for one without a flag
    of its own), the dict's key from Python."""
    return either(hyper_flag(key), f'hyper={{"{key}": ...}}')


def hyper_flag(key: str) -> str:
    """How train-hypernet takes HyperConfig option ``key``: its flag, or ``--set KEY`` for one without a flag."""
    return HYPER_FLAGS.get(key, f"--set {key}")


def hyper_flags_named(function: Callable[Params, Result]) -> Callable[Params, Result]:
    """``function`` with HyperConfig's own refusals naming train-hypernet's flags under the ``lowdim`` command
    (``--heads``, ``--set feedforward``), as this module's names do: from its first check to its last step."""
    @functools.wraps(function)
    def named_as_flags(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        with options_named(hyper_flag):
            return function(*args, **kwargs)
    return named_as_flags


def hyper_option(path: list[str]) -> str:
    """A HyperConfig option of ``job.hyper`` by its path within (``encoder_config.hidden_size``), as a resume names
    it: its flag, then the rest of the path, on the command line (``--encoder-config hidden_size``); from Python the
    field it is set in, then the path (``HyperTrainJob(hyper=...) encoder_config.hidden_size``)."""
    if not on_the_command_line():
        return f"{name('hyper')} {'.'.join(path)}"
    return " ".join([hyper_key(path[0]), ".".join(path[1:])]) if path[1:] else hyper_key(path[0])
