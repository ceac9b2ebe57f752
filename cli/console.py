"""The two consoles every command prints through."""

from __future__ import annotations

from rich.console import Console

# Soft wrap: a line wider than the terminal is left for the terminal to wrap, so a printed path, command
# or error is copied whole (rich would break it with newlines); tables are still drawn to the width.
out = Console(soft_wrap=True)
err = Console(stderr=True, emoji=False, soft_wrap=True)  # messages quote user text: 'face:abc:' is no emoji
