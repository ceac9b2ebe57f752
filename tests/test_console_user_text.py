"""``user_text``: the markup that prints a user's text (a path, prompt, token, metric name) exactly as written inside
the CLI's own markup, on both consoles: brackets, emoji codes and backslashes included, whatever follows it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lowdim_cli.console import err, out, user_text

# the characters rich reads as markup, emoji or escapes, and a few plain ones
TEXT = st.text(alphabet="[]/\\:@#=abV smile", max_size=30)
# our markup on either side of the user's text: a closing tag right after it is where backslashes count
AROUND = [("wrote [bold]", "[/]"), ("", ""), ("[yellow]skipped ", ":[/] x"), ("", " (12 bytes)"), ("a ", "[bold]b[/]")]


def printed(console, markup: str) -> str:
    with console.capture() as capture:
        console.print(markup, highlight=False)
    return capture.get()


@given(text=TEXT, around=st.sampled_from(AROUND), style=st.sampled_from(["", "bold", "dim"]))
def test_what_prints_is_the_text(text, around, style):
    before, after = around
    markup = f"{before}{user_text(text, style) if style else user_text(text)}{after}"
    plain = printed(out, f"{before}{after}").rstrip("\n")  # our part of the line, as it prints alone
    cut = len(printed(out, before).rstrip("\n"))
    expected = plain[:cut] + text + plain[cut:] + "\n"
    for console in (out, err):
        assert printed(console, markup) == expected


def test_an_emoji_code_in_a_name_is_not_an_emoji_on_either_console():
    for console in (out, err):
        assert printed(console, "wrote a:smile:b") == "wrote a:smile:b\n"


def test_a_name_of_anything_is_shown_as_its_text():
    assert printed(out, f"wrote {user_text(3)} and {user_text(None)}") == "wrote 3 and None\n"


@given(text=st.text(alphabet=st.sampled_from(["a", "[", "\n", "\r", "\x1b", "\x07", "\t", "\udcff", "é"]),
                    max_size=20))
def test_a_control_character_or_undecodable_byte_prints_as_its_escape_on_one_line(text):
    """A file name may hold a newline, an escape code or a byte that is not UTF-8: on stdout as on stderr, the line
    says it as an escape, so a printed path never moves the cursor, clears the screen or crashes the encoder."""
    for console in (out, err):
        line = printed(console, f"wrote {user_text(text, 'bold')}")
        assert line.endswith("\n") and line[:-1].isprintable(), repr(line)
    if "\x1b" in text:
        assert "\\x1b" in printed(out, user_text(text))
