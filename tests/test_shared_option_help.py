"""An option that means the same in several commands reads the same in each one's --help.

They had drifted: --gradient-checkpointing said "Trade compute for memory." in train and precompute,
"UNet gradient checkpointing." in train-hypernet, and a measured, longer account in personalize.
"""

from __future__ import annotations

import pytest
import typer.main

from lowdim_cli.main import _add_plugin_commands, app

# Declared once in cli/shared_options.py, beside Device, Dtype and ModelConfig
# (--checkpoint-every is not: its 0 keeps train's last step and none of train-hypernet's, tests/test_help_review_eo.py)
SHARED = ["--set", "--augment", "--mixed-precision", "--gradient-checkpointing", "--prompt", "--crop-margin",
          "--resume"]

# The same flag naming something else in these commands, so their help rightly differs
ELSEWHERE = {
    "--set": {"train-hypernet": "hypernetwork options", "eval": "metric options",
              "train": "space options, and the modes that take none",
              "inspect": "space options, with an example"},
    "--augment": {"train-hypernet": "the diffusion term's images only"},
    "--prompt": {"train-hypernet": "the diffusion term's prompt", "generate": "prompts to draw",
                 "bench quality": "prompts to draw"},
    "--crop-margin": {"eval": "the references' crop, only with --crop"},
    "--resume": {"precompute": "hidden, taken as the no-op it is there: precompute resumes by itself"},
}


def commands() -> dict[str, object]:
    _add_plugin_commands()
    found = {}

    def walk(command, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            found[f"{path} {name}".strip()] = sub
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "")
    return found


@pytest.mark.parametrize("flag", SHARED)
def test_an_option_shared_by_commands_has_one_help_text(flag):
    helps = {name: param.help for name, command in commands().items()
             for param in getattr(command, "params", []) if flag in param.opts
             and name not in ELSEWHERE.get(flag, {})}
    assert len(helps) >= 2, f"{flag}: no longer shared ({sorted(helps)})"
    assert len(set(helps.values())) == 1, f"{flag} reads differently: {helps}"


def test_gradient_checkpointing_says_what_it_costs_and_saves():
    helps = {param.help for command in commands().values() for param in getattr(command, "params", [])
             if "--gradient-checkpointing" in param.opts}
    (text,) = helps
    assert text.startswith("Recompute activations") and "1.8x" in text and "memory" in text


def test_each_command_excused_above_still_takes_that_flag():
    """An excuse for a command that lost the flag would hide nothing, and read as if it did."""
    found = commands()
    for flag, excused in ELSEWHERE.items():
        for name in excused:
            assert any(flag in param.opts for param in found[name].params), (flag, name)
