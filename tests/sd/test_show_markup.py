"""`lowdim show` prints what a file says, and the path a user typed, as text: a token, base model or file name that
reads as rich markup ("[red]", "[bold]") or as an emoji code (":thumbs_up:") is shown as written, not styled,
swallowed or turned into a picture (a file from someone else decides those words, and the path is one to copy); a
field named by the file (a recipe's key) that holds a line break or an escape code is shown escaped, as values are."""

from __future__ import annotations

import json
import shutil

import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

import lowdim
from lowdim_cli.main import main


def test_a_token_that_looks_like_markup_is_printed_as_written(embedding, tmp_path, capsys):
    with safe_open(str(embedding), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
        metadata = {**handle.metadata(), "token": "[red]vqz[/red]"}
    edited = tmp_path / "markup.safetensors"
    save_file(tensors, str(edited), metadata=metadata)
    assert main(["show", str(edited)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "[red]vqz[/red]" in shown


def test_a_file_name_that_looks_like_markup_is_the_title_as_written(embedding, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(embedding, tmp_path / "[bold]x.safetensors")
    assert main(["show", "[bold]x.safetensors"]) == 0
    title = capsys.readouterr().out.splitlines()[0]
    assert title == "[bold]x.safetensors: a lowdim adapter", title


def small_adapter(path, token: str = "", extra: dict | None = None):
    """A LiDB adapter of one linear layer: a file whose `use it:` line names its path."""
    model = nn.ModuleDict({"proj": nn.Linear(6, 5)})
    lowdim.inject(model, lowdim.get_space("lidb", a=4, b=3), ["proj"], seed=3)
    return lowdim.save_adapter(path, model, token=token, extra=extra)


def test_emoji_codes_in_a_token_and_a_file_name_are_printed_as_written(tmp_path, capsys):
    path = small_adapter(tmp_path / "me:thumbs_up:.safetensors", token=":red_heart:zwx")
    assert main(["show", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: a lowdim adapter", lines[0]
    assert any(line.split("│")[2].strip() == ":red_heart:zwx" for line in lines if line.startswith("│ token ")), lines
    assert lines[-1] == f"use it: lowdim.load_adapter({str(path)!r}, model)", lines[-1]


def test_a_recipe_key_holding_a_line_break_and_an_escape_code_is_one_escaped_field_name(tmp_path, capsys):
    key = "looks\n\x1b[2J"  # a line break and the escape code that clears the screen
    path = small_adapter(tmp_path / "me.safetensors", extra={key: "red"})
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and any("looks\\n\\x1b[2J" in line and "red" in line for line in out.splitlines()), out
    assert main(["show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"]["recipe"] == {key: "red"}  # --json: the key whole
