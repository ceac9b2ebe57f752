"""Review EJ, a third-party plugin author's findings: the docs' lazy entry module keeps torch out of `--help` and
is a whole plugin; a hook that returns its classes, a space with another space's config, a bug in a plugin's code
and an option without help text are each told naming the plugin and its package; the contract suite does not
shrink the failures of a broken space for minutes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import Phase, settings
from test_plugins import ScalarSpace, plugin_module

import lowdim
from lowdim import plugins
from lowdim.registry import Entry
from lowdim.spaces import Space, SpaceConfig, option
from lowdim.spaces.lora import LoraConfig, LoraSpace
from lowdim_cli import errors

PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
LOAD_CHECK = "test_the_plugin_loads_and_registers_without_warnings"

# A space whose param_shapes has a bug (with a model of two small layers to run it on), one whose hook returns its
# class instead of registering it, and one whose option has no help text: each an installed package of its own.
SPACE = textwrap.dedent('''
    from dataclasses import dataclass

    import torch

    from lowdim import LayerSet, Space, SpaceConfig, option
    from lowdim.backends import Backend
    from lowdim.hookspecs import hookimpl


    @dataclass
    class BoomConfig(SpaceConfig):
        rank: int = option(1, "Width of the update.")


    class Boom(Space):
        name = "ej-boom"
        config_class = BoomConfig

        def param_shapes(self, layer):
            return {"up": (layer.out_features, 1 // 0)}

        def init_params(self, layer, generator):
            return {"up": torch.zeros(layer.out_features, 1)}

        def factors(self, params, buffers):
            up = params["up"]
            return torch.ones(*up.shape[:-2], 1, 3, dtype=up.dtype), up
''')
BOOM = SPACE + textwrap.dedent('''

    class Two(Backend):
        name, layer_sets, default_layer_set = "ej-two", {"all": LayerSet("all", ("*",))}, "all"

        def skeleton(self):
            return torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))


    @hookimpl
    def register_spaces(register):
        register(Boom)


    @hookimpl
    def register_backends(register):
        register(Two())
''')
BOOM_LINE = next(number for number, line in enumerate(BOOM.splitlines(), 1) if "1 // 0" in line)
RETURNS = SPACE.replace('"ej-boom"', '"ej-returns"').replace("1 // 0", "1") + textwrap.dedent('''

    @hookimpl
    def register_spaces(register):
        return [Boom]
''')
NO_HELP = SPACE.replace('"ej-boom"', '"ej-nohelp"').replace("1 // 0", "1").replace(
    'rank: int = option(1, "Width of the update.")', "width: float = 1.0") + textwrap.dedent('''

    @hookimpl
    def register_spaces(register):
        register(Boom)
''')


def install(site: Path, entry_point: str, module: str, code: str) -> None:
    """A package ``lowdim-<entry_point>`` whose entry point ``entry_point`` is ``module``, as pip installs one."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(code)
    info = site / f"lowdim_{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lowdim-{entry_point}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lowdim]\n{entry_point} = {module}\n")


def run_python(site: Path, *arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


# -- findings 1 and 2: the docs' lazy entry module ------------------------------------------------------------
def docs_block(header: str) -> str:
    found = re.search(rf"```python\n({re.escape(header)}\n.*?)```", PAGE.read_text(), re.S)
    assert found is not None, f"docs/plugins.md shows no block headed {header!r}"
    return found.group(1)


HELP_THEN_REGISTER = textwrap.dedent("""
    import contextlib, io, sys, warnings
    from lowdim_cli.main import main

    with contextlib.redirect_stdout(io.StringIO()):
        main(["--help"])
    print("after --help:", "my_space.space" in sys.modules, "torch" in sys.modules)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        import lowdim
        registry = lowdim.Registry.from_plugins(load_entry_points=True)
    print("registered:", registry.spaces["frozen-down"].value.__module__ if "frozen-down" in registry.spaces else None)
    print("warned:", [str(w.message) for w in said if "my_space" in str(w.message) or "frozen-down" in str(w.message)])
""")


def test_the_docs_lazy_entry_module_copied_as_headed_registers_its_space_and_keeps_torch_out_of_help(tmp_path):
    site = tmp_path / "site"
    install(site, "frozen-down", "my_space", docs_block("# my_space/__init__.py, with FrozenDownSpace in "
                                                        "my_space/space.py"))
    (site / "my_space" / "space.py").write_text(docs_block("# my_space/__init__.py"))  # the class, in its module
    done = run_python(site, "-c", HELP_THEN_REGISTER, cwd=tmp_path)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "after --help: False False" in said, said  # neither the space module nor torch loaded for --help
    assert "registered: my_space.space" in said and "warned: []" in said, said


def test_lowdims_hook_check_reads_only_the_names_a_lazy_entry_module_holds(tmp_path, monkeypatch):
    package = tmp_path / "ej_lazy_probe"
    package.mkdir()
    (package / "heavy.py").write_text("Heavy = object  # stands for a module that imports torch\n")
    (package / "__init__.py").write_text(textwrap.dedent("""
        from lowdim.hookspecs import hookimpl
        from lowdim.plugins import lazy_exports

        __getattr__, __dir__ = lazy_exports(__name__, {"ej_lazy_probe.heavy": ("Heavy",)})


        @hookimpl
        def register_spaces(register):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import ej_lazy_probe

        assert "Heavy" in dir(ej_lazy_probe)
        assert plugins.hook_signature_problem(plugins.new_plugin_manager(), ej_lazy_probe) is None
        assert "ej_lazy_probe.heavy" not in sys.modules
    finally:
        for name in ("ej_lazy_probe", "ej_lazy_probe.heavy"):
            sys.modules.pop(name, None)


# -- finding 3: a hook that returns what it should register -----------------------------------------------------
def test_a_hook_that_returns_its_classes_is_a_warning_naming_the_plugin_and_the_fix():
    module = plugin_module("returner", register_spaces=lambda register: [ScalarSpace])
    with pytest.warns(plugins.PluginWarning) as caught:
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    said = [str(w.message) for w in caught]
    assert len(said) == 1, said
    assert said[0].startswith(f"plugin 'returner': register_spaces returned [{ScalarSpace!r}]; call register("), said
    assert "the return value is ignored" in said[0]
    assert "scalar" not in registry.spaces


def test_a_hook_whose_comprehension_returns_registers_nones_is_no_warning():
    module = plugin_module("comprehends", register_spaces=lambda register: [register(ScalarSpace)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", plugins.PluginWarning)
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    assert registry.spaces["scalar"].plugin == "comprehends"


@pytest.fixture(scope="module")
def spaces_listed(tmp_path_factory) -> subprocess.CompletedProcess:
    """`lowdim spaces` with the plugin whose hook returns its class and the one whose option has no help text."""
    site = tmp_path_factory.mktemp("site")
    install(site, "ej-returns", "ejb_returns", RETURNS)
    install(site, "ej-nohelp", "ejb_nohelp", NO_HELP)
    return run_python(site, "-m", "lowdim", "spaces", cwd=site)


def test_lowdim_spaces_warns_of_a_hook_that_returns_its_class_naming_its_package(spaces_listed):
    assert spaces_listed.returncode == 0, spaces_listed.stderr
    assert ("Warning: plugin 'ej-returns' (package lowdim-ej-returns): register_spaces returned [<class "
            "'ejb_returns.Boom'>]") in spaces_listed.stderr, spaces_listed.stderr


def test_the_contract_load_check_fails_a_plugin_whose_hook_returns_its_class(tmp_path):
    site = tmp_path / "site"
    install(site, "ej-returns", "ejb_returns", RETURNS)
    done = run_python(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "lowdim.testing.space_contract",
                      "-k", f"{LOAD_CHECK} and ej-returns", cwd=tmp_path)
    said = done.stdout + done.stderr
    assert "1 failed" in said and f"{LOAD_CHECK}[ej-returns]" in said, said
    assert "register_spaces returned" in said, said


# -- finding 4: another space's config; a bug in a plugin's code ---------------------------------------------------
@dataclass
class GateConfig(SpaceConfig):
    scale: float = option(1.0, "Factor on the update.")


class Borrowed(LoraSpace):
    name = "borrowed"
    config_class = GateConfig  # LoraSpace's methods read rank and alpha


class DeclaresLora(Space[LoraConfig]):
    name = "declares-lora"
    config_class = GateConfig
    param_shapes, init_params, factors = ScalarSpace.param_shapes, ScalarSpace.init_params, ScalarSpace.factors


@dataclass
class WiderConfig(LoraConfig):
    extra: int = option(0, "An option the subclass adds.")


class Wider(LoraSpace):
    name = "wider"
    config_class = WiderConfig


@pytest.mark.parametrize(("space_class", "parent"), [(Borrowed, "LoraSpace"), (DeclaresLora, "Space[LoraConfig]")])
def test_a_space_with_a_config_not_its_parents_is_refused_as_it_registers(space_class, parent):
    module = plugin_module("borrower", register_spaces=lambda register: register(space_class))
    with pytest.warns(plugins.PluginWarning) as caught:
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "plugin 'borrower' raised in register_spaces and was skipped" in said[0], said
    assert (f"space '{space_class.name}' ({space_class.__name__}): config_class GateConfig is no subclass of "
            f"LoraConfig, the config of {parent}") in said[0], said
    assert space_class.name not in registry.spaces


def test_a_space_with_a_subclass_of_its_parents_config_registers():
    module = plugin_module("widener", register_spaces=lambda register: register(Wider))
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    assert registry.spaces["wider"].value is Wider


def test_a_bug_in_a_plugin_spaces_method_keeps_its_traceback_and_ends_naming_the_plugin(tmp_path):
    site = tmp_path / "site"
    install(site, "ej-boom", "ejb_boom", BOOM)
    done = run_python(site, "-m", "lowdim", "inspect", "-m", "ej-two", "--space", "ej-boom", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr and "ZeroDivisionError" in done.stderr, done.stderr
    assert done.stderr.rstrip().splitlines()[-1] == (
        f"lowdim: this error was raised in plugin 'ej-boom' (package lowdim-ej-boom), at ejb_boom/__init__.py:"
        f"{BOOM_LINE}: report it to that plugin's authors"), done.stderr


def test_a_bug_outside_any_plugin_names_no_plugin():
    try:
        raise ValueError("a bug in lowdim itself")
    except ValueError as error:
        errors.name_the_plugin(error)
        assert not getattr(error, "__notes__", None)


# -- finding 5: the no-help warning names the plugin ------------------------------------------------------------
def test_the_no_help_text_warning_names_the_plugin_and_its_package(spaces_listed):
    assert ("Warning: plugin 'ej-nohelp' (package lowdim-ej-nohelp): space 'ej-nohelp' (Boom): option 'width' of "
            "BoomConfig has no help text") in spaces_listed.stderr, spaces_listed.stderr


# -- finding 6: the contract suite over a broken space -------------------------------------------------------------
@dataclass
class JitterConfig(SpaceConfig):
    rank: int = option(1, "Width of the update.")


class Jittery(Space):
    """ΔW = up · down with down all ones, whose factors jitter up at random: math no two calls agree on."""

    name = "ej-jittery"
    config_class = JitterConfig
    calls = 0

    def param_shapes(self, layer):
        return {"up": (layer.out_features, 1)}

    def init_params(self, layer, generator):
        return {"up": torch.zeros(layer.out_features, 1)}

    def make_buffers(self, layer, seed):
        return {"down": torch.ones(1, layer.in_features, dtype=torch.float64)}

    def factors(self, params, buffers):
        type(self).calls += 1
        up = params["up"]
        down = buffers["down"].to(up.dtype)
        return down.expand(*up.shape[:-2], *down.shape[-2:]), up * (1 + 0.1 * torch.randn_like(up))


def test_no_property_of_the_contract_suite_shrinks_a_failure():
    from lowdim.testing import space_contract

    properties = {name: test for name, test in vars(space_contract).items()
                  if name.startswith("test_") and hasattr(test, "hypothesis")}
    assert len(properties) >= 10, sorted(properties)
    for name, test in properties.items():
        phases = test._hypothesis_internal_use_settings.phases
        assert Phase.shrink not in phases and Phase.generate in phases, (name, phases)


def test_a_property_over_a_space_whose_math_is_random_stops_at_its_first_failure(monkeypatch):
    from lowdim.testing import space_contract
    from lowdim.testing.contract_cases import PROPERTY, REGISTRY

    monkeypatch.setitem(REGISTRY.spaces, Jittery.name, Entry(Jittery.name, Jittery, "jitter-plugin"))
    monkeypatch.setattr(Jittery, "calls", 0)
    prop = space_contract.test_factors_and_delta_give_the_spaces_own_update_within_its_rank
    # The suite's settings, without the example database: a failure saved by an earlier run would be replayed first.
    monkeypatch.setattr(prop, "_hypothesis_internal_use_settings",
                        settings(prop._hypothesis_internal_use_settings, database=None))
    with pytest.raises(AssertionError, match="off the space's formula"):
        prop(space_name=Jittery.name)
    # Two factors calls an example (the space's, the reference's): a failure found, then replayed once, not shrunk
    # through hundreds more (337 calls with shrinking).
    assert Jittery.calls <= 2 * (PROPERTY.max_examples + 1), Jittery.calls
