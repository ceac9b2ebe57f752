"""``lowdim show ALIAS`` on a model a plugin registered under a stranger's name (100 KB of letters, which the
registry's name rule lets through, or a line break its backend object takes after registering): the title and the
"alias of" row are each one bounded, escaped line, and ``--json`` keeps the name whole."""

from __future__ import annotations

import json

import pytest
from test_show_models_pipelines_bounded import registered

from lowdim_cli.main import main
from lowdim_sd.plugin import SDBackend

pytestmark = pytest.mark.usefixtures("one_thread")

HUGE = "n" * 100_000


def shown(target: str, capsys) -> tuple[list[str], dict]:
    """The lines `lowdim show TARGET` prints, and its --json."""
    assert main(["show", target]) == 0
    out = capsys.readouterr().out
    assert len(out) < 5_000 and "\x1b" not in out, out[:300]
    assert main(["show", target, "--json"]) == 0
    return out.splitlines(), json.loads(capsys.readouterr().out)


def test_a_100kb_model_name_is_a_bounded_title_and_alias_row(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no file named short here
    with registered(SDBackend(HUGE, "", aliases=("short",))):
        lines, whole = shown("short", capsys)
    title = lines[0]
    assert title.startswith("short: the registered model 'nnn") and title.endswith("(lowdim models)"), title[:300]
    assert "(100,000 characters)" in title and len(title) < 300, title[:300]
    assert whole["fields"]["alias_of"] == HUGE  # --json: the name whole
    assert len(whole["kind"]) < 300


def test_a_model_name_with_a_line_break_is_one_escaped_title_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    backend = SDBackend("plain", "", aliases=("short",))
    with registered(backend):
        backend.name = "two\nlines"  # what a plugin's object says once registered: the registry checked the first
        lines, whole = shown("short", capsys)
    assert lines[0] == "short: the registered model 'two\\nlines' (lowdim models)", lines[:2]
    assert whole["fields"]["alias_of"] == "two\nlines"


def test_a_plain_model_name_is_shown_as_it_is(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with registered(SDBackend("plain", "", aliases=("short",))):
        lines, whole = shown("short", capsys)
    assert lines[0] == "short: the registered model plain (lowdim models)"
    assert whole["kind"] == "the registered model plain (lowdim models)" and whole["fields"]["alias_of"] == "plain"


def test_a_long_model_name_a_near_miss_means_is_bounded_in_did_you_mean(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no file of that name here
    meant = "q" + "x" * 398 + "z"  # 400 characters of the registry's letters: a near miss of one 255 long finds it
    with registered(SDBackend(meant, "")):
        assert main(["show", "q" + "x" * 253 + "z"]) == 1
    said = capsys.readouterr().err
    assert "; did you mean 'qxxx" in said and "(400 characters)?" in said, said
    assert meant not in said and len(said) < 700, said
