"""What a plugin author reads when their package cannot be loaded is one line in lowdim's words, naming the
package to fix or uninstall and what to do: a hook whose parameter is not the one lowdim passes by name (pluggy's
own words are three lines, which break `lowdim --version`'s plugins line), an entry point naming a module the
package does not install, and a register() call with the wrong number of arguments."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import warnings

import pytest
from test_plugins import ScalarSpace, plugin_module

import lowdim
from lowdim import plugins, registry

# The hook's `def` sits on line 5 of the package's __init__.py.
HOOK = textwrap.dedent('''
    from lowdim.hookspecs import hookimpl


    @hookimpl
    def register_spaces({parameters}):
        pass
''').lstrip()


@pytest.fixture
def installed(tmp_path, monkeypatch, app_as_it_was):
    """Install package ``module`` (its __init__.py ``source``, or no module at all for None) under the distribution
    name ``dist`` with entry point ``point``, as pip leaves one; lowdim then discovers it afresh."""

    def install(module: str, dist: str, point: str, source: str | None) -> None:
        if source is not None:
            (tmp_path / module).mkdir()
            (tmp_path / module / "__init__.py").write_text(source)
        info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[lowdim]\n{point} = {module}\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        monkeypatch.setattr(plugins, "_installed", None)
        monkeypatch.setattr(plugins, "_failed_to_load", {})
        monkeypatch.setattr(registry, "_current", None)

    yield install
    for name in [name for name in sys.modules if name.startswith("load_msg_")]:
        del sys.modules[name]


def plugin_warnings(about: str) -> list[str]:
    """The PluginWarnings a fresh Python-API registry gives that name ``about`` (other installed plugins say
    nothing)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = lowdim.Registry.from_plugins(["lowdim.spaces.builtin"], load_entry_points=True)
    assert sorted(built.spaces)[:4] == ["lidb", "lora", "stack", "ti"]  # lowdim goes on without the plugin
    return [str(w.message) for w in caught if issubclass(w.category, plugins.PluginWarning) and about in str(w.message)]


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    from lowdim_cli.main import main

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("module", "parameters", "wanted"), [
    ("load_msg_renamed", "reg", "reg"),
    ("load_msg_extra", "register, config", "register, config"),
    ("load_msg_none", "", ""),
])
def test_a_hook_with_other_parameters_than_register_is_one_line_naming_package_file_and_the_fix(
        installed, capsys, module, parameters, wanted):
    installed(module, "lowdim-sigplug", "sigplug", HOOK.format(parameters=parameters))
    said = (f"plugin package lowdim-sigplug ({module}/__init__.py:5): hook register_spaces({wanted}) must take one "
            f"parameter named `register` (lowdim passes it by name)")
    assert plugin_warnings("lowdim-sigplug") == [said]

    code, out, err = cli(["spaces"], capsys)
    assert code == 0 and f"Warning: {said}" in " ".join(err.split())  # rich wraps long lines at spaces
    assert "\\n" not in err and "PluginValidationError" not in err

    plugins._installed, plugins._failed_to_load = None, {}
    code, out, err = cli(["--version"], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].startswith("lowdim ")  # the plugins line stays one line
    assert f"lowdim-sigplug 0.1 (failed to load: hook register_spaces({wanted}) must take one parameter" in lines[1]


def test_an_entry_point_naming_a_module_that_is_not_installed_names_the_package_and_what_to_do(installed, capsys):
    installed("load_msg_ghost_mod", "lowdim-ghost", "ghost", None)
    said = ("plugin package lowdim-ghost: its entry point names module 'load_msg_ghost_mod', which is not installed "
            "(reinstall or uninstall lowdim-ghost)")
    assert plugin_warnings("lowdim-ghost") == [said]
    code, out, err = cli(["spaces"], capsys)
    assert code == 0 and f"Warning: {said}" in " ".join(err.split())


def test_a_plugin_importing_a_missing_dependency_is_not_told_its_entry_point_is_wrong(installed):
    installed("load_msg_dep", "lowdim-dep", "dep", "import load_msg_no_such_dependency\n")
    [said] = plugin_warnings("load_msg_dep")
    assert "entry point" not in said
    assert said.startswith("plugin 'dep' (load_msg_dep) failed to load and was skipped: ModuleNotFoundError: "
                           "No module named 'load_msg_no_such_dependency'")
    assert said.endswith("(at load_msg_dep/__init__.py:1)")


@pytest.mark.parametrize(("hook", "call", "takes"), [
    ("register_spaces", lambda register: register(ScalarSpace, ScalarSpace), "one Space subclass"),
    ("register_spaces", lambda register: register(space=ScalarSpace), "one Space subclass"),
    ("register_heads", lambda register: register("scalar_head"), "a name and a factory"),
])
def test_a_register_call_with_the_wrong_arguments_names_register_and_what_it_takes(hook, call, takes):
    module = plugin_module("load_msg_arity", **{hook: call})
    with pytest.warns(plugins.PluginWarning) as caught:
        built = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
        getattr(built, hook.removeprefix("register_"))
    [said] = [str(w.message) for w in caught]
    assert f"raised in {hook} and was skipped: TypeError: register() in {hook} takes {takes} per call" in said
    assert "_check_space" not in said and "positional argument" not in said


SPECNAME_HOOK = textwrap.dedent('''
    from lowdim.hookspecs import hookimpl
    from test_plugins import ScalarSpace


    @hookimpl(specname="register_spaces")
    def {function}({parameters}):
        {body}
''').lstrip()


def test_a_hook_named_by_specname_is_checked_against_the_spec_it_implements(installed):
    # Its function's name is another hook's (register_commands takes `cli`): judged by that name, a valid plugin
    # was refused as a whole.
    installed("load_msg_specname", "lowdim-specplug", "specplug",
              SPECNAME_HOOK.format(function="register_commands", parameters="register", body="register(ScalarSpace)"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = lowdim.Registry.from_plugins(["lowdim.spaces.builtin"], load_entry_points=True)
    assert ScalarSpace.name in built.spaces
    assert [str(w.message) for w in caught if "lowdim-specplug" in str(w.message)] == []


def test_a_hook_named_by_specname_with_the_wrong_parameter_names_both_names(installed):
    installed("load_msg_specname_bad", "lowdim-specbad", "specbad",
              SPECNAME_HOOK.format(function="my_spaces", parameters="reg", body="pass"))
    said = ("plugin package lowdim-specbad (load_msg_specname_bad/__init__.py:6): hook my_spaces (specname "
            "register_spaces)(reg) must take one parameter named `register` (lowdim passes it by name)")
    assert plugin_warnings("lowdim-specbad") == [said]
