"""FIU: `lowdim show` on an 80-column terminal folded long paths (`files`, `default hypernetwork`, ...) across lines
inside the table's `│ ... │` borders, so no copy took one whole. Where a path would fold, the rows print without the
box, each value on one line the terminal soft-wraps; where every path fits, the table is as before; --json never
changes."""

from __future__ import annotations

import json

import pytest

from lowdim_cli import console
from lowdim_cli.main import main

BORDERS = "│┃┌└"


def show(capsys, monkeypatch, *args: str, columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    monkeypatch.setattr(console.out, "_width", columns)  # a console made while COLUMNS was set keeps that width
    capsys.readouterr()
    assert main(["show", *args]) == 0
    return capsys.readouterr().out


def tinyfaces_paths(capsys, monkeypatch) -> list[str]:
    """The paths the model's rows hold, as --json gives them (whole, whatever the terminal)."""
    fields = json.loads(show(capsys, monkeypatch, "tinyfaces", "--json", columns=80))["fields"]
    paths = [value for value in fields.values() if isinstance(value, str) and value.startswith("/")]
    assert len(paths) >= 2 and max(map(len, paths)) > 80 - 30  # wider than the table's value column at 80
    return paths


def test_every_path_of_show_prints_whole_on_one_line_at_80_columns(capsys, monkeypatch):
    paths = tinyfaces_paths(capsys, monkeypatch)
    lines = show(capsys, monkeypatch, "tinyfaces", columns=80).splitlines()

    for path in paths:
        holding = [line for line in lines if line.endswith(path)]
        assert holding, (path, lines)
        assert all(not any(border in line for border in BORDERS) for line in holding), holding
    assert lines[3].startswith("files ") and lines[3].split()[-1] == paths[0]  # in the table's order
    assert lines[-1].startswith("use it: lowdim ")


def test_a_path_that_fits_keeps_the_table_at_200_columns(capsys, monkeypatch):
    paths = tinyfaces_paths(capsys, monkeypatch)
    lines = show(capsys, monkeypatch, "tinyfaces", columns=200).splitlines()

    assert lines[1].startswith("┌") and any(line.startswith("└") for line in lines)
    files = next(line for line in lines if line.startswith("│ files "))
    assert [cell.strip() for cell in files.strip("│").split("│")] == ["files", paths[0]]
    assert lines[-2].startswith("in diffusers: ") and lines[-1].startswith("use it: lowdim ")


@pytest.mark.parametrize("columns", [80, 200])
def test_the_rows_without_the_box_read_as_the_table_s(capsys, monkeypatch, columns):
    lines = show(capsys, monkeypatch, "tinyfaces", columns=columns).splitlines()
    rows = [" ".join(line.strip("│ ").replace("│", " ").split()) for line in lines[1:-2] if line[:1] not in "┌└"]

    assert rows[0] == "registered by the plugin tinyfaces" and rows[3] == "pipeline StableDiffusionPipeline"


def test_json_is_the_same_at_any_width(capsys, monkeypatch):
    narrow = show(capsys, monkeypatch, "tinyfaces", "--json", columns=80)
    wide = show(capsys, monkeypatch, "tinyfaces", "--json", columns=200)

    assert narrow == wide and json.loads(narrow)["type"] == "registered_model"


def test_a_path_with_spaces_is_measured_whole_and_prose_is_not():
    from lowdim_cli.info_commands import folds_a_path

    spaced = [("files", "/home/me/My Models/tiny faces/" + "x" * 20)]  # each word fits 48 columns, the path not
    assert folds_a_path(spaced, 60) and not folds_a_path(spaced, 120)
    assert not folds_a_path([("note", "a long line of prose " * 5)], 60)
