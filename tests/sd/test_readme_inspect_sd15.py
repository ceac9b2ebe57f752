"""README's `lowdim inspect --model sd15 --space lidb` block is what the command prints today: the paper's ~26K
trainable parameters and the file size a user is promised (a file format change moved it by 24 bytes unnoticed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lowdim_cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"
CELL = re.compile(r"\s*[│┃|]\s*")


def rows(text: str) -> list[tuple[str, ...]]:
    """The table rows and plain lines of ``text`` as cells, borders and padding dropped."""
    found = []
    for line in text.splitlines():
        cells = tuple(cell for cell in CELL.split(line.strip()) if cell)
        if cells and not set(line.strip()) <= set("━─┏┓┗┛┡┩└┘┌┐├┤┼┳┻╇╈┃│ "):
            found.append(cells)
    return found


def readme_block() -> str:
    text = README.read_text()
    start = text.index("`lowdim inspect --model sd15 --space lidb` counts")
    return text[text.index("```\n", start) + 4:text.index("\n```", text.index("```\n", start) + 4)]


@pytest.mark.slow  # builds SD1.5's architecture (no weights): about 7 s
def test_the_readme_shows_what_inspect_prints_for_sd15(capsys):
    assert main(["inspect", "--model", "sd15", "--space", "lidb"]) == 0
    printed = rows(capsys.readouterr().out)
    shown = rows(readme_block())
    assert len(shown) >= 6  # the header, three groups, the total, the file line
    missing = [row for row in shown if row not in printed]
    assert not missing, f"README.md's inspect block says {missing}; the command prints {printed}"
