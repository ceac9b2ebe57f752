"""Text from someone else's files (a picture's name, a result's label) as one markdown table cell that shows exactly
that text: nothing in it becomes a link, a tag, markup or another cell, and no control character reaches the file."""

from __future__ import annotations

import re

# The characters markdown (CommonMark, GitHub's tables, strikethrough and autolinks) reads as syntax inside a cell's
# inline text; a backslash before ASCII punctuation shows it as itself. So are '@', a URL's '://' and the '.' after
# 'www', so no `http://x`, `www.x` or `a@b.c` becomes a link. Others ('-', '#', '(', a plain ':') mean nothing there
# and stay readable in the file.
_SYNTAX = re.compile(r"[\\`*_\[\]<>|~@&]|:(?=//)|(?<=www)\.", re.IGNORECASE)


def markdown_cell(text: str) -> str:
    """``text`` escaped for one markdown table cell (line breaks and other unprintable characters as escapes)."""
    shown = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in str(text))
    return _SYNTAX.sub(lambda found: "\\" + found.group(0), shown)
