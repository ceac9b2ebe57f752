"""What --help and docs/cli.md say is what the commands do: merge's auto dtype, the defaults and files a
newcomer looks for, a place to start, and what a command line that does not parse prints."""

from __future__ import annotations

import re
from pathlib import Path

from lowdim_cli.main import main

DOCS = Path(__file__).resolve().parents[1] / "docs"


def help_of(capsys, monkeypatch, *path: str) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    assert main([*path, "--help"]) == 0
    return " ".join(capsys.readouterr().out.replace("│", " ").split())  # one line: the help wraps in its table


def test_merge_says_auto_is_fp32_as_it_loads_on_the_cpu(capsys, monkeypatch):
    text = help_of(capsys, monkeypatch, "merge")
    assert "fp16 on GPU" not in text and "auto (fp32: merge runs on the CPU)" in text


def test_generate_shows_its_seed_default_and_names_prompts_json(capsys, monkeypatch):
    text = help_of(capsys, monkeypatch, "generate")
    assert re.search(r"--seed INTEGER Seed \(repeatable\); one image per prompt and seed\. \[default: 0\] --", text)
    assert "prompts.json" in text and "lowdim eval" in text


def test_personalize_names_the_files_it_writes(capsys, monkeypatch):
    text = help_of(capsys, monkeypatch, "personalize")
    assert "OUT/adapter.safetensors" in text and "OUT/preview.png" in text and "OUT/adapter.FORMAT.safetensors" in text


def test_the_top_level_help_says_where_to_start(capsys, monkeypatch):
    text = help_of(capsys, monkeypatch)
    # An installed wheel has no examples/ folder: the line takes the reader's own photo.
    assert "Start here: lowdim personalize -m tinyfaces -i face.jpg -o me" in text
    assert (DOCS.parent / "examples" / "face.png").is_file()


def test_a_command_line_that_does_not_parse_is_what_the_docs_say(capsys):
    assert main(["tinyfaces-identities", "-o", "z", "--count", "0"]) == 2
    said = capsys.readouterr().err
    assert said.startswith("Usage: lowdim tinyfaces-identities") and "\nError: Invalid value for '--count'" in said
    docs = " ".join((DOCS / "cli.md").read_text().split())
    assert "error box" not in docs
    assert ("A command line that does not parse (an unknown option, a number out of range) gets click's plain usage "
            "line and an `Error:` line on stderr, and status 2") in docs
