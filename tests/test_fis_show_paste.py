"""Review EO 9: `lowdim show MODEL`'s `in diffusers` row is a line of Python to paste; on an 80-column terminal the
table folded it inside its borders (`from_pretrained("/work/main/p` / `lugins/...")`), so a copy held `│` and a
broken path. It is printed under the table, one line as `use it:` is, at any width; --json keeps the field."""

from __future__ import annotations

import json

import pytest

from lowdim_cli.main import main

BORDERS = "│┃|"


def show(capsys, monkeypatch, *args: str, columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    assert main(["show", *args]) == 0
    return capsys.readouterr().out


def diffusers_code(capsys, monkeypatch) -> str:
    """The row's code, as --json gives it (the field whole, whatever the terminal)."""
    fields = json.loads(show(capsys, monkeypatch, "tinyfaces", "--json", columns=80))["fields"]
    code = fields["in_diffusers"]
    assert code.startswith("StableDiffusionPipeline.from_pretrained(") and len(code) > 80  # wider than the terminal
    return code


@pytest.mark.parametrize("columns", [80, 200])
def test_the_diffusers_line_prints_whole_on_a_line_of_its_own(capsys, monkeypatch, columns):
    code = diffusers_code(capsys, monkeypatch)
    lines = show(capsys, monkeypatch, "tinyfaces", columns=columns).splitlines()

    assert f"in diffusers: {code}" in lines  # one line, nothing but the label before it: pasted as it is
    holding = [line for line in lines if "from_pretrained" in line]
    assert len(holding) == 1 and not any(border in holding[0] for border in BORDERS)
    assert not any("in diffusers" in line and any(b in line for b in BORDERS) for line in lines)  # not in the table


def test_the_table_and_the_use_line_are_still_there_at_80_columns(capsys, monkeypatch):
    lines = show(capsys, monkeypatch, "tinyfaces", columns=80).splitlines()

    assert any(line.startswith("registered by ") for line in lines)  # its rows without the box there (FIU)
    assert any(line.startswith("files ") for line in lines)
    assert lines[-1].startswith("use it: lowdim ")
    assert lines[-2].startswith("in diffusers: ")  # under the table, before the command that uses the model


def test_json_keeps_the_diffusers_field_and_the_use_line(capsys, monkeypatch):
    shown = json.loads(show(capsys, monkeypatch, "tinyfaces", "--json", columns=80))
    wide = json.loads(show(capsys, monkeypatch, "tinyfaces", "--json", columns=200))

    assert shown == wide  # --json is the same whatever the terminal
    assert shown["type"] == "registered_model"
    assert shown["fields"]["in_diffusers"].endswith('/model")')
    assert shown["use"].startswith("lowdim ")
