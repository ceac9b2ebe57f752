"""Which plugin's hook runs now (``lowdim.plugins.call_each`` sets it), so lowdim's own checks of what a plugin
registers (an option without help text: ``lowdim.spaces.checks``) name the plugin and its package in their warnings,
as every other plugin warning does.

Read, not caught: each warning is given once, where it is given, so Python's filters see it as it is (their
once-per-place dedupe included: a registry built twice in one process warns once), and a plugin's own warnings
pass untouched.

Also how every such message names a plugin (``plugin_label``: its name and the package to uninstall, a second
package's entry point of a taken name included): here, below ``lowdim.plugins`` and ``lowdim.registry``, which both
use it, so that neither imports the other at call time for it.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator

from lowdim.scoped import scoped

_calling: contextvars.ContextVar[str | None] = contextvars.ContextVar("lowdim_calling_plugin", default=None)


@contextlib.contextmanager
def calling_plugin(plugin_name: str) -> Iterator[None]:
    """While the block runs, ``as_the_plugins`` names the plugin registered as ``plugin_name``."""
    with scoped(_calling, plugin_name):
        yield


def as_the_plugins(message: str) -> str:
    """``message`` of a lowdim check of what a plugin registers, starting with the plugin and its package while a
    plugin's hook runs (unless it names them already); as it is otherwise (a space registered by hand)."""
    plugin = _calling.get()
    if plugin is None:
        return message
    label = plugin_label(plugin)
    return message if label in message else f"{label}: {message}"


def plugin_label(plugin: str) -> str:
    """"plugin 'NAME' (package DIST)": who registered something, and what a user would uninstall. A second
    package's entry point of a taken name is registered as "NAME (package DIST)" (lowdim.plugins), told alike."""
    name, dist = split_renamed(plugin)
    return f"plugin '{name}'" + (f" (package {dist})" if dist else package_suffix(name))


def package_suffix(plugin: str) -> str:
    """' (package NAME)' for a plugin installed from a distribution: what a user uninstalls."""
    from importlib.metadata import entry_points

    name, dist = split_renamed(plugin)
    if dist:
        return f" (package {dist})"
    found = next((point for point in entry_points(group="lowdim") if point.name == name), None)
    dist = getattr(found, "dist", None)
    return f" (package {dist.name})" if dist is not None else ""


def renamed_plugin(name: str, dist: str) -> str:
    """The name a second package's entry point of an already registered name is registered under."""
    return f"{name} (package {dist})"


def split_renamed(plugin: str) -> tuple[str, str | None]:
    """(entry-point name, package) of a plugin registered under ``renamed_plugin``'s name; (plugin, None) else."""
    found = _RENAMED.fullmatch(plugin)
    return (found["name"], found["dist"]) if found else (plugin, None)


_RENAMED = re.compile(r"(?P<name>.+) \(package (?P<dist>[^()]+)\)")
