"""Review EJ: a plugin entry module that binds both of ``lazy_exports``' functions (its ``__getattr__`` and its
``__dir__``, as docs/plugins.md's example could be read) is registered without importing what it defers: lowdim's
plugin manager looks for hooks among the names the module defines, where pluggy's own would read every name
``dir()`` gives and so import the lazy module at every start of lowdim."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from lowdim import plugins

DEFERRED = "fis_ej_deferred_heavy"  # stands in for torch: a module the plugin imports only when a name is read
PLUGIN = "fis_ej_lazy_plugin"

PLUGIN_SOURCE = textwrap.dedent(f'''
    from lowdim.hookspecs import hookimpl
    from lowdim.plugins import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {{"{DEFERRED}": ("HeavyThing",)}})


    @hookimpl
    def register_spaces(register):
        return None
''')


@pytest.fixture
def lazy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / f"{DEFERRED}.py").write_text("class HeavyThing:\n    pass\n")
    (tmp_path / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (DEFERRED, PLUGIN):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module(PLUGIN)
    assert "HeavyThing" in dir(module) and DEFERRED not in sys.modules  # the lazy name is listed, not yet read
    return module


def test_registering_a_lazy_module_leaves_its_deferred_import_undone(lazy_plugin) -> None:
    manager = plugins.build_plugin_manager([lazy_plugin], load_entry_points=False)

    assert DEFERRED not in sys.modules
    own = [impl.plugin for impl in manager.hook.register_spaces.get_hookimpls()]
    assert lazy_plugin in own  # its real hook is still found
    assert lazy_plugin.HeavyThing.__module__ == DEFERRED  # and the lazy name still works when read


def test_a_fresh_manager_checks_and_registers_it_without_the_import(lazy_plugin) -> None:
    manager = plugins.new_plugin_manager()

    assert plugins.hook_signature_problem(manager, lazy_plugin) is None
    manager.register(lazy_plugin, name="fis-ej")
    assert plugins.hook_problem(manager, lazy_plugin) is None

    assert DEFERRED not in sys.modules
    assert manager.get_plugin("fis-ej") is lazy_plugin


def test_a_hook_offered_lazily_is_named_in_a_warning_and_left_unread(tmp_path: Path, monkeypatch) -> None:
    """Review FE 2: a hook the module offers through its __getattr__ is no name the module holds; registering it
    would import what the module deferred, so it is left out, said in one warning naming the module and hook."""
    (tmp_path / "fe_hooks.py").write_text(textwrap.dedent('''
        from lowdim.hookspecs import hookimpl


        @hookimpl
        def register_spaces(register):
            return None
    '''))
    (tmp_path / "fe_lazy_hook.py").write_text('from lowdim.plugins import lazy_exports\n\n'
                                              '__getattr__, __dir__ = lazy_exports(__name__, '
                                              '{"fe_hooks": ("register_spaces",)})\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("fe_hooks", "fe_lazy_hook"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("fe_lazy_hook")
    with pytest.warns(plugins.PluginWarning, match=r"^plugin fe_lazy_hook: its hook register_spaces is offered "
                                                   r"lazily \(its __getattr__\), .*import it there$"):
        manager = plugins.build_plugin_manager([module], load_entry_points=False)
    assert "fe_hooks" not in sys.modules
    assert module not in [impl.plugin for impl in manager.hook.register_spaces.get_hookimpls()]
    # Review FF 1: the check an installed plugin gets next says nothing more (its hook is marked: no "without
    # @hookimpl"), and reads no lazy name (which imported the hooks' module, and torch with a real plugin's)
    assert plugins.hook_problem(manager, module) is None
    assert "fe_hooks" not in sys.modules
