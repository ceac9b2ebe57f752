"""Why a plugin's space cannot be used here, said as it is: plugins switched off by LOWDIM_NO_PLUGINS, two
plugins claiming the name, or one plugin registering it twice; never "install" what is installed, nor
"uninstall one of them" to the only plugin there is (review H, H1 and H2)."""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import EntryPoint

import pytest
from test_plugins import ScalarSpace, plugin_module
from torch import nn

import lowdim
from lowdim import plugins
from lowdim.errors import LowdimError, PluginError
from lowdim_cli.main import main

BUILTINS = ["lowdim.spaces.builtin"]


def scalar_plugin(name: str = "scalar"):
    return plugin_module(name, register_spaces=lambda register: register(ScalarSpace))


@pytest.fixture
def scalar_adapter(tmp_path):
    """An adapter file of the plugin space 'scalar', saved where that plugin is installed."""
    model = nn.Sequential(nn.Linear(4, 4))
    with lowdim.use_registry(lowdim.Registry.from_plugins([*BUILTINS, scalar_plugin()])):
        lowdim.inject(model, lowdim.get_space("scalar"), "0")
        return lowdim.save_adapter(tmp_path / "s.safetensors", model)


def show_rows(path) -> dict[str, str]:
    from lowdim_sd.file_info import describe

    info = describe(path)
    assert info.use == ""  # no command to run: every one that loads the file would refuse it
    return dict(info.rows)


# -- H1: LOWDIM_NO_PLUGINS -------------------------------------------------------------------------
def test_with_plugins_switched_off_an_adapter_of_a_plugin_space_says_so_instead_of_install_it(
        monkeypatch, scalar_adapter):
    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    with lowdim.use_registry(lowdim.Registry.from_plugins(BUILTINS)):
        with pytest.raises(LowdimError) as raised:
            lowdim.read_adapter(scalar_adapter)
        rows = show_rows(scalar_adapter)
    said = str(raised.value)
    assert said.startswith(f"{scalar_adapter}: ") and "LOWDIM_NO_PLUGINS is set" in said and "'scalar'" in said
    assert "not installed here" not in said and "install the plugin" not in said
    assert "needs" not in rows and "LOWDIM_NO_PLUGINS is set" in rows["problem"] and "'scalar'" in rows["problem"]


def test_without_the_plugin_and_with_plugins_on_the_file_still_says_to_install_it(monkeypatch, scalar_adapter):
    monkeypatch.delenv("LOWDIM_NO_PLUGINS", raising=False)
    with lowdim.use_registry(lowdim.Registry.from_plugins(BUILTINS)):
        with pytest.raises(LowdimError, match="its space 'scalar' is not installed here"):
            lowdim.read_adapter(scalar_adapter)
        assert "which is not installed here" in show_rows(scalar_adapter)["needs"]


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())  # rich wraps long lines


@pytest.mark.parametrize("off", [True, False])
def test_lowdim_spaces_says_when_plugins_are_switched_off(monkeypatch, capsys, off):
    if off:
        monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    else:
        monkeypatch.delenv("LOWDIM_NO_PLUGINS", raising=False)
    with lowdim.use_registry(lowdim.Registry.from_plugins(BUILTINS)):
        code, said = run(capsys, "spaces")
    assert code == 0 and "lidb" in said
    assert ("LOWDIM_NO_PLUGINS is set" in said) == off


# -- H1: two plugins claim the name ----------------------------------------------------------------
def test_show_names_the_clash_that_keeps_a_plugin_space_out(scalar_adapter):
    with pytest.warns(plugins.PluginWarning, match="registered twice"):
        clashing = lowdim.Registry.from_plugins([*BUILTINS, scalar_plugin("one"), scalar_plugin("two")])
    with lowdim.use_registry(clashing):
        clash = "space 'scalar' is registered twice: by plugin 'one' and by plugin 'two'"
        with pytest.raises(PluginError, match=clash):
            lowdim.read_adapter(scalar_adapter)
        rows = show_rows(scalar_adapter)
    assert "needs" not in rows
    assert rows["problem"].startswith("space 'scalar' is registered twice: by plugin 'one' and by plugin 'two'")
    assert "uninstall one of them" in rows["problem"]


# -- H2: one plugin registering a name twice -------------------------------------------------------
def test_a_plugin_registering_one_class_twice_keeps_it_without_a_word():
    def twice(register):
        register(ScalarSpace)
        register(ScalarSpace)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = lowdim.Registry.from_plugins([*BUILTINS, plugin_module("twice", register_spaces=twice)])
    assert registry.spaces["scalar"].value is ScalarSpace
    with lowdim.use_registry(registry):
        assert lowdim.get_space("scalar").name == "scalar"


def test_a_plugin_registering_two_classes_under_one_name_is_told_it_is_its_own_bug():
    class Other(ScalarSpace):
        pass

    def both(register):
        register(ScalarSpace)
        register(Other)

    with pytest.warns(plugins.PluginWarning) as caught:
        registry = lowdim.Registry.from_plugins([*BUILTINS, plugin_module("both", register_spaces=both)])
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and said[0].startswith("plugin 'both' registers space 'scalar' twice")
    assert "a bug in the plugin" in said[0] and "uninstall" not in said[0]
    with lowdim.use_registry(registry), pytest.raises(PluginError) as raised:
        lowdim.get_space("scalar")
    assert "plugin 'both' registers space 'scalar' twice" in str(raised.value)
    assert "uninstall" not in str(raised.value)


def test_both_packages_of_a_shared_entry_point_name_are_labelled_alike(monkeypatch):
    first = plugin_module("first_impl", register_spaces=lambda register: register(ScalarSpace))
    second = plugin_module("second_impl", register_spaces=lambda register: register(ScalarSpace))
    for module in (first, second):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    points = [EntryPoint(name="scalar", value="first_impl", group="lowdim"),
              EntryPoint(name="scalar", value="second_impl", group="lowdim")]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points)
    with pytest.warns(plugins.PluginWarning) as caught:
        lowdim.Registry.from_plugins(load_entry_points=True)
    said = " ".join(str(w.message) for w in caught)
    assert "by plugin 'scalar' (package second_impl)" in said  # the package outside the quotes, as for the first
    assert "'scalar (package" not in said
