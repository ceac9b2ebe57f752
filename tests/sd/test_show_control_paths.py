"""`lowdim show` on a path holding a line break or an escape code (a file or folder name may hold either): the title
shows the path escaped on one line, no escape code reaches the terminal, and the `use it:` line still runs as
printed when pasted in bash, the path written as one `$'...'` word; --json keeps the path whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from shlex import quote

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from lowdim_cli.main import main
from lowdim_sd.file_info_parts import pasteable

NAME = "me\n\x1b[2Jx"  # a line break and the escape code that clears the screen
ESCAPED = "me\\n\\x1b[2Jx"

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="the use line is checked by running it in bash")


def feature_file(path):
    metadata = {"format": "lowdim.encoder_features", "encoder": "tiny", "input_size": "32", "normalize": "true",
                "pool": "cls", "keys": json.dumps(["a.jpg"])}
    save_file({"features": torch.zeros(1, 4, dtype=torch.float16)}, str(path), metadata=metadata)
    return path


def shard_file(folder):
    folder.mkdir()
    path = folder / "shard-00000.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "lowdim.weights.shard",
                                                          "identities": json.dumps(["ann"])})
    return path


def shown(path, capsys) -> list[str]:
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out, ascii(out)
    return out.splitlines()


def arguments_in_bash(use_line: str) -> list[bytes]:
    """The arguments the `use it:` command passes to lowdim when pasted in bash (lowdim replaced by a printer), as
    the bytes a program gets: a name's bytes that are no UTF-8 come back as they are on disk."""
    command = use_line.removeprefix("use it: ")
    done = subprocess.run(["bash", "-c", 'lowdim() { printf "%s\\0" "$@"; }; ' + command], capture_output=True,
                          check=True, env={**os.environ, "LC_ALL": "C.UTF-8"})  # $'\u0085': a UTF-8 terminal's
    return done.stdout.split(b"\0")[:-1]


@needs_bash
def test_a_file_name_holding_a_line_break_and_an_escape_code_is_one_escaped_title_and_a_runnable_use_line(
        tmp_path, capsys):
    path = feature_file(tmp_path / f"{NAME}.safetensors")
    lines = shown(path, capsys)
    assert ESCAPED in lines[0] and lines[0].endswith(": a lowdim encoder-feature file (lowdim encoder-features)"), \
        lines[0]
    assert lines[-1].startswith("use it: lowdim train-hypernet"), lines
    assert arguments_in_bash(lines[-1])[-2:] == [b"--features", os.fsencode(path)]


@needs_bash
def test_a_folder_name_holding_a_line_break_is_escaped_in_the_title_and_the_kind_and_runs_in_the_use_line(
        tmp_path, capsys):
    path = shard_file(tmp_path / NAME)
    lines = shown(path, capsys)
    assert lines[0].count(ESCAPED) == 2 and "a shard of the weight folder" in lines[0], lines[0]  # path and kind
    assert arguments_in_bash(lines[-1]) == [b"show", os.fsencode(path.parent)]


@needs_bash
def test_a_quote_a_backslash_and_a_tab_in_the_name_come_back_whole_from_bash(tmp_path, capsys):
    path = shard_file(tmp_path / "it's a\\b\tc\n")
    lines = shown(path, capsys)
    assert "\t" not in lines[0] and len(lines[0].split(": a shard")) >= 2, lines[0]
    assert arguments_in_bash(lines[-1]) == [b"show", os.fsencode(path.parent)]


# Any file name: printable or not, a quote, a backslash, a byte that is no UTF-8 (a lone surrogate in Python's str).
NAMES = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
                | st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF), min_size=1)


@needs_bash
@settings(max_examples=40, deadline=None)
@given(NAMES)
def test_any_name_pasted_in_bash_is_the_same_argument_on_one_printable_line(name):
    line = pasteable(f"lowdim show -o {quote(name)} --resume")
    assert line.isprintable(), ascii(line)
    assert arguments_in_bash(line) == [b"show", b"-o", os.fsencode(name), b"--resume"]


def test_a_printable_path_is_shown_and_quoted_as_before(tmp_path, capsys):
    path = feature_file(tmp_path / "my face's.safetensors")
    lines = shown(path, capsys)
    assert lines[0] == f"{path}: a lowdim encoder-feature file (lowdim encoder-features)", lines[0]
    assert lines[-1].endswith("--features " + "'" + str(path).replace("'", "'\"'\"'") + "'"), lines[-1]


def test_json_keeps_the_path_and_the_use_line_whole(tmp_path, capsys):
    path = feature_file(tmp_path / f"{NAME}.safetensors")
    assert main(["show", str(path), "--json"]) == 0
    shown_json = json.loads(capsys.readouterr().out)
    assert shown_json["path"] == str(path)
    assert shown_json["use"].endswith(f"--features '{path}'")
