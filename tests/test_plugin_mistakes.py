"""A plugin's quiet mistakes are said aloud: a hook pluggy would pass over (a typo in its name, no
@hookimpl), a hook that raises halfway through its registrations, and an adapter file of a space that is
not installed here."""

from __future__ import annotations

import sys
import types
import warnings
from importlib.metadata import EntryPoint

import pytest
from test_plugins import ScalarSpace, plugin_module
from torch import nn

import lowdim
from lowdim import plugins
from lowdim.hookspecs import hookimpl


def load_entry_point(monkeypatch, module: types.ModuleType) -> lowdim.Registry:
    """The registry as `lowdim` builds it, with ``module`` the one installed entry point."""
    monkeypatch.setitem(sys.modules, module.__name__, module)
    point = EntryPoint(name=module.__name__, value=module.__name__, group="lowdim")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [point])
    return lowdim.Registry.from_plugins(load_entry_points=True)


def unmarked():
    """A new hook function each time: hookimpl marks the function object itself."""
    return lambda register: register(ScalarSpace)


@pytest.mark.parametrize(("make", "said"), [
    (lambda m: setattr(m, "register_space", hookimpl(unmarked())),
     "implements register_space, which is no lowdim hook (did you mean register_spaces?), so it is never called"),
    (lambda m: setattr(m, "register_spaces", unmarked()),
     "defines register_spaces without @hookimpl (from lowdim.hookspecs), so it is never called"),
    (lambda m: setattr(m, "helper", unmarked()),
     "implements no lowdim hook (register_backends, register_commands, register_heads, register_metrics, "
     "register_spaces), so it adds nothing"),
])
def test_a_hook_pluggy_would_never_call_is_a_warning_naming_the_plugin(monkeypatch, make, said):
    module = types.ModuleType("typo_plugin")
    make(module)
    with pytest.warns(plugins.PluginWarning) as caught:
        registry = load_entry_point(monkeypatch, module)
    assert [str(w.message) for w in caught] == [f"plugin 'typo_plugin' (typo_plugin) {said}"]
    assert "scalar" not in registry.spaces and "lidb" in registry.spaces


def test_a_plugin_with_only_a_command_hook_loads_quietly(monkeypatch):
    module = plugin_module("commands_only", register_commands=lambda cli: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_entry_point(monkeypatch, module)


def test_a_hook_that_raises_keeps_none_of_its_registrations(monkeypatch):
    class Second(ScalarSpace):
        name = "second"

    def halfway(register):
        register(ScalarSpace)
        register(Second)
        register(object)  # no Space: the hook stops here

    module = plugin_module("halfway", register_spaces=halfway)
    with pytest.warns(plugins.PluginWarning, match="plugin 'halfway' raised in register_spaces and was skipped"):
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    assert sorted(registry.spaces) == ["lidb", "lora", "stack", "ti"]  # skipped whole, as the warning says


def test_show_says_which_plugin_an_adapter_needs_instead_of_a_command_that_would_refuse_it(tmp_path):
    from lowdim_sd.file_info import describe

    plugin = plugin_module("scalar", register_spaces=unmarked())
    model = nn.Sequential(nn.Linear(4, 4))
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin", plugin])):
        lowdim.inject(model, lowdim.get_space("scalar"), "0")
        path = lowdim.save_adapter(tmp_path / "s.safetensors", model)
        assert describe(path).use.startswith("lowdim.load_adapter(")  # its layer '0' is no SD model's
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin"])):
        info = describe(path)
    assert info.use == ""
    assert dict(info.rows)["needs"] == ("the plugin that provides space 'scalar', which is not installed here "
                                        "(`lowdim spaces` lists those that are)")


def test_an_adapter_of_a_plugin_space_names_the_package_a_machine_without_it_must_install(tmp_path):
    vera = pytest.importorskip("lowdim_vera")  # lowdim-vera: a first-party plugin, installed through its entry point
    assert vera is not None
    model = nn.Sequential(nn.Linear(6, 5))
    lowdim.inject(model, lowdim.get_space("vera"), ["0"])
    path = lowdim.save_adapter(tmp_path / "v.safetensors", model)
    assert lowdim.read_adapter(path).metadata["space_package"] == "lowdim-vera"
    plain = nn.Sequential(nn.Linear(6, 5))
    lowdim.inject(plain, lowdim.get_space("lidb"), ["0"])
    assert "space_package" not in lowdim.read_adapter(lowdim.save_adapter(tmp_path / "l.safetensors", plain)).metadata
    with lowdim.use_registry(lowdim.Registry.from_plugins(load_entry_points=False)):  # a machine without it
        with pytest.raises(lowdim.errors.LowdimError, match=r"the plugin lowdim-vera, which is not installed \(pip "
                                                            r"install lowdim-vera"):
            lowdim.read_adapter(path)
        from lowdim_sd.file_info import describe

        assert "(package lowdim-vera)" in dict(describe(path).rows)["needs"]


def test_a_never_called_hook_s_warning_names_the_package_to_fix_or_uninstall(monkeypatch):
    # The module is not the distribution's name: a user reading only 'badname' cannot tell what to uninstall.
    module = types.ModuleType("badname")
    module.register_spaces = unmarked()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    point = types.SimpleNamespace(name="my-plugin", value="badname", group="lowdim", load=lambda: module,
                                  dist=types.SimpleNamespace(name="lowdim-my-plugin"))
    monkeypatch.setattr(plugins, "entry_points", lambda group: [point])
    with pytest.warns(plugins.PluginWarning) as caught:
        lowdim.Registry.from_plugins(load_entry_points=True)
    assert [str(w.message) for w in caught] == [
        "plugin 'my-plugin' (badname, package lowdim-my-plugin) defines register_spaces without @hookimpl "
        "(from lowdim.hookspecs), so it is never called"]
