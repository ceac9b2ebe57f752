"""The shared contract suite (``lowdim.testing.space_contract``) over every installed space, and the checks
that only this source checkout can make: each first-party space registered by its own plugin, cleanly."""

from __future__ import annotations

from pathlib import Path

from lowdim.testing.space_contract import *  # noqa: F403  the suite's tests, collected here
from lowdim.testing.space_contract import LOAD_WARNINGS, REGISTRY

# Space -> the plugin that must register it. The plugins/ folder holds the first-party plugins.
EXPECTED = {"lora": "builtin", "lidb": "builtin", "stack": "builtin", "ti": "builtin", "vera": "vera"}
FIRST_PARTY_PLUGINS = {"vera", "tinyfaces"}
PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"


def test_every_first_party_space_is_registered_by_its_plugin_without_warnings():
    assert LOAD_WARNINGS == []
    assert {name: REGISTRY.spaces[name].plugin for name in EXPECTED if name in REGISTRY.spaces} == EXPECTED
    assert {path.name for path in PLUGINS_DIR.glob("lowdim-*")} == {f"lowdim-{n}" for n in FIRST_PARTY_PLUGINS}
    assert all(REGISTRY.manager.get_plugin(name) is not None for name in FIRST_PARTY_PLUGINS)


def test_a_failed_property_shows_its_values_in_a_plugins_own_test_module():
    import lowdim.testing.space_contract as suite

    assert "@py_builtins" in vars(suite)  # pytest rewrote its asserts, though it arrived here by `import *`
