"""The two consoles every command prints through, and ``user_text``: a user's text inside their markup."""

from __future__ import annotations

import re

from rich.console import Console

# Soft wrap: a line wider than the terminal is left for the terminal to wrap, so a printed path, command
# or error is copied whole (rich would break it with newlines); tables are still drawn to the width.
# Emoji off on both: lines quote user text, and 'face:abc:' or a file named 'x:smile:' is no emoji.
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, emoji=False, soft_wrap=True)

# A bracket and the backslashes before it: rich reads '[' + a letter, '#', '/' or '@' up to ']' as a tag, and drops
# the backslash of any other '\['.
_BRACKET = re.compile(r"(\\*)(\[[a-z#/@][^[]*?]|\[)")
_TRAILING_BACKSLASHES = re.compile(r"\\+\Z")


def user_text(text: object, style: str = "none") -> str:
    """Markup that prints ``text`` (a path, prompt, token, metric name) as written, in ``style``, wherever it stands
    in a line of ours: '[v]' in 'me[v]' is no tag, and 'x[/]y' no rich error after the work is done.

    Not rich's ``escape``: it leaves the backslash of 'a\\[' to be dropped and halves 'c\\\\' before a closing tag.
    It is one line that cannot drive the terminal (``terminal_safe``: a file name's newline or escape code), closed
    in its own tag ("none" is no style), so what follows it in the line never changes it."""
    escaped = _BRACKET.sub(_escaped_bracket, terminal_safe(str(text)))
    escaped = _TRAILING_BACKSLASHES.sub(lambda run: run[0] * 2, escaped)  # halved again before the closing tag
    return f"[{style}]{escaped}[/]"


def terminal_safe(text: str) -> str:
    """``text`` as one line that cannot drive the terminal: a control character (a newline or an escape code in a
    file name it quotes) written as its escape, and a byte a file name holds that is not UTF-8 (a lone surrogate in
    Python's str, which the terminal's encoder would crash on) as ``\\xHH``. Printable text is unchanged."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    if 0xDC80 <= ord(char) <= 0xDCFF:  # os.fsdecode's surrogateescape: the byte itself
        return f"\\x{ord(char) - 0xDC00:02x}"
    return repr(char)[1:-1]


def _escaped_bracket(match: re.Match[str]) -> str:
    backslashes, bracket = match.groups()
    if len(bracket) > 1:  # a tag: its backslashes are halved and one more makes it text
        return backslashes * 2 + "\\" + bracket
    return backslashes + "\\" + bracket  # a lone '[': one backslash before it is dropped
