"""Review EM 3: the warnings given while a plugin's hook runs are given once, where they are given, so Python's
"default" filter says each once however often a registry is built in one process (a library's user, a test suite,
a re-made registry); lowdim's own no-help warning still names the plugin, and a plugin's own warnings pass as the
plugin gave them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import lowdim
from lowdim.hookspecs import hookimpl
from lowdim.plugins import PluginWarning
from lowdim.spaces.lora import LoraConfig, LoraSpace

OWN = "the plugin's own note"


@dataclass
class BareConfig(LoraConfig):
    width: float = 1.0  # a plain dataclass default: no help text


class BareSpace(LoraSpace):
    name = "em-bare"
    config_class = BareConfig


def _register(register) -> None:
    warnings.warn(OWN, UserWarning, stacklevel=1)  # said where the plugin says it
    register(BareSpace)


def _plugin():
    import types

    module = types.ModuleType("em_bare")
    module.register_spaces = hookimpl(_register)
    return module


def _built(times: int, action: str = "default") -> list[warnings.WarningMessage]:
    module = _plugin()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter(action)
        for _ in range(times):
            lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    return said


def _no_help(said: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in said if issubclass(w.category, PluginWarning) and "no help text" in str(w.message)]


def test_a_registry_built_twice_says_each_warning_of_a_plugins_hook_once():
    said = _built(2)
    assert [str(w.message) for w in said if str(w.message) == OWN] == [OWN]
    assert len(_no_help(said)) == 1, [str(w.message) for w in said]


def test_the_no_help_warning_still_names_the_plugin_and_each_build_says_it_with_always():
    said = _built(2, "always")
    assert len(_no_help(said)) == 2  # not swallowed: the filters decide, as they see each warning
    assert all(text.startswith("plugin 'em_bare'") and "option 'width' of BareConfig" in text
               for text in _no_help(said))


def test_a_plugins_own_warning_passes_as_the_plugin_gave_it():
    [own] = [w for w in _built(1) if str(w.message) == OWN]
    assert own.category is UserWarning and own.filename == __file__  # not re-emitted from lowdim's frames


def test_lowdims_check_names_the_plugin_only_while_its_hook_runs():
    from lowdim.plugin_calling import as_the_plugins, calling_plugin

    assert as_the_plugins("space 'x' (X): a note") == "space 'x' (X): a note"  # a space registered by hand
    with calling_plugin("em_bare"):
        assert as_the_plugins("space 'x' (X): a note") == "plugin 'em_bare': space 'x' (X): a note"
        assert as_the_plugins("plugin 'em_bare': said") == "plugin 'em_bare': said"  # named once
    assert as_the_plugins("a note") == "a note"
