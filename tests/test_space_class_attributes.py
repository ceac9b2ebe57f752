"""A space's class attributes other than its name and config (``learning_rate``, ``learns_tokens``, ``summary``)
are checked when the class registers: a bad one is one line naming the space, instead of `lowdim train` blaming
an ``--lr`` the user never gave, a string read as True, or `lowdim spaces` failing to draw its table."""

from __future__ import annotations

import math
import re
import warnings

import pytest
from test_plugins import ScalarSpace, plugin_module

import lowdim
from lowdim import plugins


def registered(attribute: str, value: object) -> tuple[lowdim.Registry, list[str]]:
    """The registry with a plugin registering a space that declares ``attribute = value``, and its warnings."""
    space_class = type("Declared", (ScalarSpace,), {"name": "declared", attribute: value})
    module = plugin_module("declaring", register_spaces=lambda register: register(space_class))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    return registry, [str(w.message) for w in caught if issubclass(w.category, plugins.PluginWarning)]


GOOD = [("learning_rate", 1e-2), ("learning_rate", 3), ("learning_rate", None), ("learns_tokens", False),
        ("summary", "A scalar times a frozen rank-1 matrix.")]


@pytest.mark.parametrize(("attribute", "value"), GOOD)
def test_a_sound_declaration_registers(attribute, value):
    registry, warned = registered(attribute, value)
    assert "declared" in registry.spaces and warned == []


@pytest.mark.parametrize(("attribute", "value", "said"), [
    ("learning_rate", "fast", "learning_rate = 'fast' must be a number > 0"),
    ("learning_rate", 0, "learning_rate = 0 must be a number > 0"),
    ("learning_rate", -1e-3, "learning_rate = -0.001 must be a number > 0"),
    ("learning_rate", math.nan, "learning_rate = nan must be a number > 0"),
    ("learning_rate", math.inf, "learning_rate = inf must be a number > 0"),
    ("learning_rate", True, "learning_rate = True must be a number > 0"),
    ("learns_tokens", "no", "learns_tokens = 'no' must be True or False"),
    ("summary", 5, "summary = 5 must be a string"),
])
def test_a_bad_declaration_is_refused_as_the_space_registers_in_one_line_naming_it(attribute, value, said):
    registry, warned = registered(attribute, value)
    assert "declared" not in registry.spaces
    assert len(warned) == 1 and "\n" not in warned[0]
    assert re.search(r"^plugin 'declaring' raised in register_spaces and was skipped: LowdimError: space 'declared' "
                     r"\(Declared\): " + re.escape(said), warned[0])


def test_train_names_the_space_not_the_lr_option_for_a_rate_set_after_it_registered():
    from lowdim_sd import defaults

    space_class = type("Later", (ScalarSpace,), {"name": "later", "learning_rate": 1e-2})
    module = plugin_module("later_plugin", register_spaces=lambda register: register(space_class))
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])):
        assert defaults.learning_rate("later") == 1e-2
        space_class.learning_rate = "fast"  # a plugin's module changing it later: still the space's fault
        with pytest.raises(lowdim.LowdimError, match=r"^space 'later': learning_rate = 'fast' must be a number > 0"):
            defaults.learning_rate("later")
