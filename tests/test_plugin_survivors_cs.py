"""Plugin loading and the registry: behaviour review CS's mutation audit found no test for."""

from __future__ import annotations

import importlib.metadata
import sys
import types
import warnings
from importlib.metadata import EntryPoint

import pytest
from test_plugins import ScalarSpace, plugin_module

import lowdim
from lowdim import plugins
from lowdim.errors import PluginError
from lowdim.registry import space_package


def test_a_package_listed_twice_loads_once_without_a_warning(monkeypatch):
    """An editable install beside a built one lists one entry point twice: one plugin, not a 'failed to load'."""
    module = plugin_module("twice_listed", register_spaces=lambda register: register(ScalarSpace))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    point = EntryPoint(name="twice", value="twice_listed", group="lowdim")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [point, point])
    monkeypatch.setattr(plugins, "_failed_to_load", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = lowdim.Registry.from_plugins(load_entry_points=True)
    assert registry.spaces["scalar"].plugin == "twice"
    assert plugins._failed_to_load == {}  # `lowdim --version` marks nothing as failed


def test_a_plugin_error_raised_in_a_hook_is_raised_not_skipped():
    """A PluginError is the user's to fix: it reaches them, not a warning that the plugin was skipped."""
    def claims_twice(register):
        raise PluginError("space 'x' is registered twice: by plugin 'a' and by plugin 'b'")

    with pytest.raises(PluginError, match="registered twice"):
        lowdim.Registry.from_plugins(["lowdim.spaces.builtin", plugin_module("claimer", register_metrics=claims_twice)])


def test_installed_plugins_are_loaded_once_per_process(monkeypatch):
    monkeypatch.setattr(plugins, "_installed", None)
    assert plugins.installed_plugins() is plugins.installed_plugins()


def test_a_second_package_of_a_taken_entry_point_name_is_named_by_its_package(monkeypatch):
    """The clash warning names what a user uninstalls: the package, not the module its entry point points at."""
    first = plugin_module("first_scalar", register_spaces=lambda register: register(ScalarSpace))
    second = plugin_module("second_scalar", register_spaces=lambda register: register(ScalarSpace))
    points = [types.SimpleNamespace(name="scalar", value=module.__name__, load=lambda module=module: module,
                                    dist=types.SimpleNamespace(name=dist))
              for module, dist in ((first, "scalar-one"), (second, "scalar-two"))]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points)
    with pytest.warns(plugins.PluginWarning, match=r"plugin 'scalar' \(package scalar-two\)"):
        lowdim.Registry.from_plugins(load_entry_points=True)


def test_a_builtin_space_records_no_package_beside_an_entry_point_named_builtin(monkeypatch):
    """lowdim's own spaces are 'builtin' in the registry; another package's entry point of that name is not
    their provider, so an adapter file of lidb names no package to install."""
    impostor = types.SimpleNamespace(name="builtin", value="impostor", group="lowdim",
                                     dist=types.SimpleNamespace(name="impostor-pkg", version="1.0"))
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin"])
    assert "lidb" in registry.spaces  # the table is built before entry points are faked
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [impostor])
    assert space_package("lidb", registry) is None
