"""A plugin hook that raises is a warning a plugin's author can act on: it names the package to uninstall and
the line of the plugin's own code where the error came from, and keeps the error itself (its traceback) as the
warning's cause, so ``-W error`` shows the whole story."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import lowdim
from lowdim import plugins

HOOK = textwrap.dedent('''
    from lowdim.hookspecs import hookimpl


    @hookimpl
    def register_spaces(register):
        from {module}.space import make_space

        register(make_space())
''')
# The bug sits in the module the hook imports, not in the hook: the line to name is here, line 3.
SPACE = textwrap.dedent('''
    def make_space():
        options = None
        return options.rank
''').lstrip()


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install a package ``module`` (its hook in __init__.py, its bug in space.py) as pip leaves one, with the
    distribution name ``dist`` and entry point ``point``; the registry then loads that entry point alone."""

    def install(module: str, dist: str, point: str) -> None:
        package = tmp_path / module
        package.mkdir()
        (package / "__init__.py").write_text(HOOK.format(module=module))
        (package / "space.py").write_text(SPACE)
        info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[lowdim]\n{point} = {module}\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        found = [entry for entry in importlib.metadata.entry_points(group="lowdim") if entry.name == point]
        monkeypatch.setattr(plugins, "entry_points", lambda group: found)

    yield install
    for name in [name for name in sys.modules if name.startswith("hook_bug")]:
        del sys.modules[name]


def test_the_warning_names_the_package_and_the_line_in_the_plugin_where_it_raised(installed):
    installed("hook_bug_a", "lowdim-hook-bug", "hookbug")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin"], load_entry_points=True)
    said = [w.message for w in caught if issubclass(w.category, plugins.PluginWarning)]
    assert [str(message) for message in said] == [
        "plugin 'hookbug' (package lowdim-hook-bug) raised in register_spaces and was skipped: AttributeError: "
        "'NoneType' object has no attribute 'rank' (at hook_bug_a/space.py:3)"]
    assert isinstance(said[0].__cause__, AttributeError)  # the error itself, its traceback too, stays reachable
    assert Path(said[0].__cause__.__traceback__.tb_next.tb_frame.f_code.co_filename).parent.name == "hook_bug_a"
    assert sorted(registry.spaces) == ["lidb", "lora", "stack", "ti"]


def test_under_w_error_the_raised_warning_is_caused_by_the_plugins_own_error(installed):
    installed("hook_bug_b", "lowdim-hook-bug", "hookbug")
    with warnings.catch_warnings():
        warnings.simplefilter("error", plugins.PluginWarning)
        with pytest.raises(plugins.PluginWarning, match=r"\(at hook_bug_b/space.py:3\)$") as raised:
            lowdim.Registry.from_plugins(["lowdim.spaces.builtin"], load_entry_points=True)
    assert isinstance(raised.value.__cause__, AttributeError)


def test_a_refusal_of_what_the_hook_registers_points_at_the_register_call():
    from test_plugins import ScalarSpace, plugin_module

    class Upper(ScalarSpace):
        name = "Upper"

    def register_upper(register):
        register(Upper)  # the line the warning names

    line = register_upper.__code__.co_firstlineno + 1
    module = plugin_module("upper_plugin", register_spaces=register_upper)
    with pytest.warns(plugins.PluginWarning) as caught:
        lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    assert str(caught[0].message).endswith(f"(at {Path(__file__).name}:{line})")


def test_a_plugin_that_fails_to_import_is_named_with_the_line_where_its_import_raised(installed, tmp_path):
    installed("hook_bug_c", "lowdim-hook-bug", "hookbug")
    (tmp_path / "hook_bug_c" / "__init__.py").write_text("from hook_bug_c.space import make_space\n\nmake_space()\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lowdim.Registry.from_plugins(["lowdim.spaces.builtin"], load_entry_points=True)
    said = [w.message for w in caught if issubclass(w.category, plugins.PluginWarning)]
    assert len(said) == 1 and "failed to load" in str(said[0])
    assert str(said[0]).endswith("(at hook_bug_c/space.py:3)")  # the plugin's line, not importlib's
    assert isinstance(said[0].__cause__, AttributeError)
