"""Which plugin's hook runs now (``lowdim.plugins.call_each`` sets it), so lowdim's own checks of what a plugin
registers (an option without help text: ``lowdim.spaces.checks``) name the plugin and its package in their warnings,
as every other plugin warning does.

Read, not caught: each warning is given once, where it is given, so Python's filters see it as it is (their
once-per-place dedupe included: a registry built twice in one process warns once), and a plugin's own warnings
pass untouched.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_calling: contextvars.ContextVar[str | None] = contextvars.ContextVar("lowdim_calling_plugin", default=None)


@contextlib.contextmanager
def calling_plugin(plugin_name: str) -> Iterator[None]:
    """While the block runs, ``as_the_plugins`` names the plugin registered as ``plugin_name``."""
    token = _calling.set(plugin_name)
    try:
        yield
    finally:
        _calling.reset(token)


def as_the_plugins(message: str) -> str:
    """``message`` of a lowdim check of what a plugin registers, starting with the plugin and its package while a
    plugin's hook runs (unless it names them already); as it is otherwise (a space registered by hand)."""
    plugin = _calling.get()
    if plugin is None:
        return message
    from lowdim.registry import plugin_label  # the registry imports lowdim.plugins, which imports this module

    label = plugin_label(plugin)
    return message if label in message else f"{label}: {message}"
