"""The contract suite's checks that every installed plugin loaded and registered without a warning, one case per
entry point and one per space a plugin registered: ``-k my-space`` selects the load check of the plugin that
registers ``my-space`` even where the entry point has another name (a package with several spaces), so a plugin
that warned while loading fails the run that selects its space."""

from __future__ import annotations

import pytest

from lowdim.plugins import is_lowdims_own, split_renamed
from lowdim.testing.contract_cases import LOAD_WARNINGS, PLUGINS, REGISTRY


def load_check_cases() -> dict[str, set[str]]:
    """Case id -> the entry points it checks: each entry point by its name (a plugin that failed to load registers
    nothing, so only its name selects it), and each plugin space by its own name, for the plugin registering it."""
    cases = {plugin: {plugin} for plugin in PLUGINS}
    for name, entry in REGISTRY.spaces.items():
        if not is_lowdims_own(REGISTRY.manager, entry.plugin):
            cases.setdefault(name, set()).add(split_renamed(entry.plugin)[0])
    return cases


def warnings_about(plugin: str) -> list[str]:
    """The load warnings naming ``plugin`` or one of its spaces (an option without help text is said of the space)."""
    spaces = [name for name, entry in REGISTRY.spaces.items() if split_renamed(entry.plugin)[0] == plugin]
    words = [f"'{plugin}'", *(f"space '{name}'" for name in spaces)]
    return [message for message in LOAD_WARNINGS if any(word in message for word in words)]


LOAD_CHECK_CASES = load_check_cases()


@pytest.mark.parametrize("case", sorted(LOAD_CHECK_CASES))
def test_the_plugin_loads_and_registers_without_warnings(case):
    for plugin in sorted(LOAD_CHECK_CASES[case]):
        said = warnings_about(plugin)
        assert not said, f"plugin '{plugin}' warned while loading: {said[0]}"


def test_no_plugin_warned_while_loading():
    assert not LOAD_WARNINGS, LOAD_WARNINGS[0]
