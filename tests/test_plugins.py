"""Plugins: entry-point discovery, isolation of broken plugins, and name conflicts."""

from __future__ import annotations

import types
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint

import pytest
import torch
from torch import nn

import lowdim
from lowdim import plugins
from lowdim.errors import PluginError
from lowdim.hookspecs import hookimpl
from lowdim.spaces import Space, SpaceConfig, option


@dataclass
class ScalarConfig(SpaceConfig):
    rank: int = option(1, "unused; kept for the example")


class ScalarSpace(Space):
    """ΔW = s · u vᵀ with frozen random u, v and one trainable number s: an outside plugin's space."""

    name = "scalar"
    config_class = ScalarConfig

    def param_shapes(self, layer):
        return {"s": (1,)}

    def init_params(self, layer, generator):
        return {"s": torch.zeros(1)}

    def make_buffers(self, layer, seed):
        generator = torch.Generator().manual_seed(seed)
        return {"u": torch.randn(layer.out_features, 1, generator=generator, dtype=torch.float64),
                "v": torch.randn(1, layer.in_features, generator=generator, dtype=torch.float64)}

    def factors(self, params, buffers):
        return buffers["v"].to(params["s"].dtype), buffers["u"].to(params["s"].dtype) * params["s"][..., None]


def plugin_module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def test_a_space_added_from_outside_works_everywhere_without_editing_lowdim(tmp_path):
    outside = plugin_module("outside", register_spaces=lambda register: register(ScalarSpace))
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", outside])
    assert registry.spaces["scalar"].plugin == "outside" and registry.spaces["lora"].plugin == "builtin"
    with lowdim.use_registry(registry):
        model = nn.Sequential(nn.Linear(4, 3))
        adapters = lowdim.inject(model, lowdim.get_space("scalar"), ["0"], seed=2)
        with torch.no_grad():
            adapters.parameters("default")[0].fill_(0.5)
        path = lowdim.save_adapter(tmp_path / "s.safetensors", model)
        fresh = nn.Sequential(nn.Linear(4, 3))
        fresh.load_state_dict({"0.weight": model[0].base_layer.weight, "0.bias": model[0].base_layer.bias})
        lowdim.load_adapter(path, fresh)
        x = torch.randn(2, 4)
        assert torch.allclose(fresh(x), model(x))
    assert "scalar" not in lowdim.get_registry().spaces


def test_a_plugin_that_raises_is_skipped_with_a_warning_naming_it():
    def explode(register):
        raise RuntimeError("boom")

    broken = plugin_module("broken_plugin", register_spaces=explode)
    with pytest.warns(plugins.PluginWarning, match="broken_plugin.*RuntimeError: boom"):
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", broken])
    assert {"lora", "lidb", "stack"} <= set(registry.spaces)


def test_an_error_in_lowdims_own_hooks_is_raised_not_hidden_in_a_warning(monkeypatch):
    import lowdim.spaces.builtin as builtin

    def bug(register):
        raise KeyError("lidb")

    from lowdim.hookspecs import hookimpl

    monkeypatch.setattr(builtin, "register_spaces", hookimpl(bug))
    with pytest.raises(KeyError, match="lidb"):
        lowdim.Registry.from_plugins(["lowdim.spaces.builtin"])


def test_an_entry_point_that_fails_to_import_is_skipped_with_a_warning(monkeypatch):
    missing = EntryPoint(name="ghost", value="no_such_module_anywhere", group="lowdim")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [missing])
    with pytest.warns(plugins.PluginWarning, match="^plugin 'ghost': its entry point names module "
                                                   "'no_such_module_anywhere', which is not installed"):
        registry = lowdim.Registry.from_plugins(load_entry_points=True)
    assert "lidb" in registry.spaces


def test_a_name_two_plugins_register_is_left_out_with_a_warning_and_every_other_name_works():
    one = plugin_module("one", register_spaces=lambda register: register(ScalarSpace))
    two = plugin_module("two", register_spaces=lambda register: register(ScalarSpace))
    expected = "space 'scalar' is registered twice: by plugin 'one' and by plugin 'two'"
    with pytest.warns(plugins.PluginWarning, match=expected + "; it is left out until one of them is uninstalled"):
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", one, two])
    assert "scalar" not in registry.spaces and "lora" in registry.spaces  # names that do not clash still work
    with lowdim.use_registry(registry):
        assert lowdim.get_space("lora").name == "lora"
        with pytest.raises(PluginError, match=expected + ": uninstall one of them to use it"):
            lowdim.get_space("scalar")


@pytest.mark.parametrize("builtin_first", [True, False])
def test_a_plugin_that_claims_a_builtin_name_is_ignored_and_the_builtin_stays(builtin_first):
    """lowdim's own commands need its spaces (personalize's finetune is a LoRA), and a built-in cannot be
    uninstalled: the plugin's claim is the one dropped, whichever hook runs first."""
    class FakeLora(ScalarSpace):
        name = "lora"

    clash = plugin_module("clashing", register_spaces=lambda register: register(FakeLora))
    also = plugin_module("also", register_spaces=lambda register: register(FakeLora))  # two plugins: no clash wins
    order = ["lowdim.spaces.builtin", clash, also] if builtin_first else [clash, also, "lowdim.spaces.builtin"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = lowdim.Registry.from_plugins(order)
    said = sorted(str(w.message) for w in caught if issubclass(w.category, plugins.PluginWarning))
    ignored = [line for line in said if "registers space 'lora', a name lowdim's own space has, which stays" in line
               and "the plugin's is ignored" in line]
    assert [line.split("'")[1] for line in ignored] == ["also", "clashing"], said  # one line each
    if builtin_first:  # as lowdim registers them: no line says the two plugins clash over a name they cannot have
        assert said == ignored
    assert registry.spaces["lora"].plugin == "builtin" and registry.spaces["lora"].value is not FakeLora
    with lowdim.use_registry(registry):
        assert type(lowdim.get_space("lora")).__name__ != "FakeLora"


def test_two_packages_with_one_entry_point_name_are_both_loaded_and_their_clash_named(monkeypatch):
    """Authors name the entry point after their space, so two authors of one idea collide: neither is dropped
    unseen (before, the second package was skipped without a word and the first silently used)."""
    import sys

    first = plugin_module("first_impl", register_spaces=lambda register: register(ScalarSpace))
    second = plugin_module("second_impl", register_spaces=lambda register: register(ScalarSpace))
    for module in (first, second):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    points = [EntryPoint(name="scalar", value="first_impl", group="lowdim"),
              EntryPoint(name="scalar", value="second_impl", group="lowdim"),
              EntryPoint(name="scalar", value="first_impl", group="lowdim")]  # one package listed twice
    monkeypatch.setattr(plugins, "entry_points", lambda group: points)
    with pytest.warns(plugins.PluginWarning, match="space 'scalar' is registered twice: .*plugin 'scalar' and by "
                                                   "plugin 'scalar' \\(package second_impl\\)"):
        registry = lowdim.Registry.from_plugins(load_entry_points=True)
    assert "scalar" not in registry.spaces


@pytest.mark.parametrize(("broken", "said"), [
    ("no default", "option 'rank' of NoDefault has no default; every option needs one"),
    ("abstract", "space 'nofactors' (NoFactors) does not define factors, which every space must"),
    ("bad name", "name 'Lora ' must be lower-case letters, digits and . _ + -"),
    ("empty name", "name '' must be lower-case letters"),
])
def test_a_space_class_no_command_could_use_is_skipped_with_a_warning_naming_its_plugin(broken, said):
    @dataclass
    class NoDefault(SpaceConfig):
        rank: int

    space_class = {
        "no default": type("NoDefaultSpace", (ScalarSpace,), {"name": "nodefault", "config_class": NoDefault}),
        "abstract": type("NoFactors", (Space,), {"name": "nofactors", "config_class": ScalarConfig,
                                                  "param_shapes": ScalarSpace.param_shapes,
                                                  "init_params": ScalarSpace.init_params}),
        "bad name": type("Spaced", (ScalarSpace,), {"name": "Lora "}),
        "empty name": type("Empty", (ScalarSpace,), {"name": ""}),
    }[broken]
    module = plugin_module("broken", register_spaces=lambda register: register(space_class))
    with pytest.warns(plugins.PluginWarning, match=r"plugin 'broken' raised in register_spaces .*" + re_escape(said)):
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    assert sorted(registry.spaces) == ["lidb", "lora", "stack", "ti"]


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_an_adapter_of_a_space_no_installed_plugin_provides_says_so(tmp_path):
    plugin = plugin_module("scalar", register_spaces=lambda register: register(ScalarSpace))
    model = nn.Sequential(nn.Linear(4, 4))
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin", plugin])):
        lowdim.inject(model, lowdim.get_space("scalar"), "0")
        path = lowdim.save_adapter(tmp_path / "s.safetensors", model)
    unknown = r"s.safetensors: its space 'scalar' is not installed here \(known: lidb, lora, stack, ti\); install"
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin"])), \
            pytest.raises(lowdim.LowdimError, match=unknown):
        lowdim.read_adapter(path)


def test_the_process_wide_registry_reads_a_table_only_when_asked():
    """`lowdim models` lists backends without running the spaces' hooks, whose classes import torch."""
    calls = []

    def spaces_hook(register):
        calls.append("spaces")
        register(ScalarSpace)

    counting = plugin_module("counting", register_spaces=spaces_hook,
                             register_backends=lambda register: calls.append("backends"))
    registry = lowdim.Registry.from_manager(plugins.build_plugin_manager([counting], load_entry_points=False),
                                            lazy=True)
    assert calls == []
    assert registry.backends == {}
    assert calls == ["backends"]
    assert list(registry.spaces) == ["scalar"] and list(registry.spaces) == ["scalar"]
    assert calls == ["backends", "spaces"]  # each hook runs once


def test_a_clash_in_a_lazy_table_is_raised_on_every_use_of_the_name():
    one = plugin_module("one", register_spaces=lambda register: register(ScalarSpace))
    two = plugin_module("two", register_spaces=lambda register: register(ScalarSpace))
    manager = plugins.build_plugin_manager(["lowdim.spaces.builtin", one, two], load_entry_points=False)
    registry = lowdim.Registry.from_manager(manager, lazy=True)
    with pytest.warns(plugins.PluginWarning, match="registered twice"):
        assert "lidb" in registry.spaces
    for _ in range(2):
        with pytest.raises(PluginError, match="space 'scalar' is registered twice"):
            registry.space_class("scalar")


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(lowdim.ConfigError, match=r"unknown space 'lidbb'; did you mean lidb\? known: .*lidb.*lora"):
        lowdim.get_space("lidbb")


def test_installed_first_party_plugins_are_discovered_through_entry_points():
    registry = lowdim.Registry.from_plugins(load_entry_points=True)
    assert registry.spaces["vera"].plugin == "vera"  # plugins/lowdim-vera, installed separately
    assert registry.backends["sd15"].plugin == "sd"   # the SD backend registers like any plugin
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lowdim.Registry.from_plugins(load_entry_points=True)  # nothing installed warns


def test_plugins_can_add_cli_commands(capsys, app_as_it_was):
    import typer

    from lowdim_cli.main import app, main

    def hello(name: str = "world"):
        """Say hello (from a plugin)."""
        print(f"hello {name}")

    commands = plugin_module("greeter", register_commands=lambda cli: cli.command()(hello))
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", commands])
    with lowdim.use_registry(registry):
        assert main(["hello", "--name", "plugin"]) == 0
    assert "hello plugin" in capsys.readouterr().out
    assert isinstance(app, typer.Typer)


def test_a_space_whose_default_init_changes_the_model_is_warned_about_when_first_built():
    class Noisy(ScalarSpace):
        name = "noisy"

        def init_params(self, layer, generator):
            return {"s": torch.ones(1)}

    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin",
                                             plugin_module("noisy", register_spaces=lambda register: register(Noisy))])
    with pytest.warns(plugins.PluginWarning, match=r"space 'noisy': its default init gives ΔW ≠ 0"):
        registry.make_space("noisy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.make_space("noisy")  # once per space
        registry.make_space("lora")  # and never for one that starts at zero
