"""The waits before a command's first bar (review CB, finding 4): on a terminal a spinner names each one (the
imports, the model's load, personalize's stages before its finetune) on stderr and is gone before a bar draws;
off a terminal, or from Python with progress off, nothing is drawn."""

from __future__ import annotations

import contextlib
import io
import re
import sys

import pytest
from rich.console import Console
from rich.file_proxy import FileProxy

import lowdim_cli.main
from lowdim_cli.main import main
from lowdim_sd import runs

pytestmark = pytest.mark.usefixtures("one_thread")


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=500)


@pytest.fixture
def bars_under_a_spinner(monkeypatch) -> list[bool]:
    """Whether each bar began while a spinner held stderr (rich's redirect of it)."""
    began: list[bool] = []
    real = runs.progress

    @contextlib.contextmanager
    def watched(*args, **kwargs):
        began.append(isinstance(sys.stderr, FileProxy))
        with real(*args, **kwargs) as advance:
            yield advance

    monkeypatch.setattr(runs, "progress", watched)
    return began


def personalize_args(tiny_sd, face, out) -> list[str]:
    return ["personalize", "-m", str(tiny_sd), "-i", str(face), "--steps", "2", "--no-preview", "--no-crop",
            "-o", str(out)]


def test_on_a_terminal_personalize_names_each_wait_before_its_bar(tiny_sd, face, tmp_path, capsys, monkeypatch,
                                                                 bars_under_a_spinner):
    screen = terminal()
    monkeypatch.setattr(lowdim_cli.main, "err", screen)  # the CLI's stderr console, a terminal here
    assert main(personalize_args(tiny_sd, face, tmp_path / "p")) == 0
    shown = screen.file.getvalue()
    for wait in ("starting: importing torch", f"loading the model {tiny_sd}", "reading the face",
                 "making the initial adapter"):
        assert wait in shown, wait
    assert bars_under_a_spinner == [False]  # the finetune's bar, drawn alone
    assert "loading the model" not in capsys.readouterr().err


def test_off_a_terminal_no_spinner_is_drawn(tiny_sd, face, tmp_path, capsys, monkeypatch):
    screen = Console(file=io.StringIO(), force_terminal=False, width=500)
    monkeypatch.setattr(lowdim_cli.main, "err", screen)
    assert main(personalize_args(tiny_sd, face, tmp_path / "p")) == 0
    assert "loading the model" not in screen.file.getvalue() + capsys.readouterr().err


def test_on_a_terminal_generate_names_the_models_load_before_its_bar(tiny_sd, tmp_path, monkeypatch,
                                                                     bars_under_a_spinner):
    screen = terminal()
    monkeypatch.setattr(lowdim_cli.main, "err", screen)
    assert main(["generate", "-m", str(tiny_sd), "-p", "a face", "--steps", "1", "-o", str(tmp_path / "g")]) == 0
    assert f"loading the model {tiny_sd}" in screen.file.getvalue()
    assert bars_under_a_spinner == [False]


@pytest.mark.parametrize("progress", [True, False])
def test_from_python_personalize_draws_its_waits_as_its_bars(tiny_sd, face, tmp_path, monkeypatch, progress):
    from lowdim_sd.personalize import PersonalizeJob, personalize

    bars = terminal()
    monkeypatch.setattr(runs, "bar_console", lambda: bars)
    personalize(PersonalizeJob(model=str(tiny_sd), image=face, steps=1, preview=False, crop=False,
                               out=tmp_path / "p"), progress=progress)
    assert (f"loading the model {tiny_sd}" in bars.file.getvalue()) is progress


def screen_after(drawn: str) -> list[str]:
    """The lines a terminal shows once ``drawn`` is written to it: carriage returns, line feeds, cursor-up and
    erase-line done as a terminal does, other escapes (colours, cursor shown) dropped."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[\??[0-9;]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", drawn):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token.startswith("\x1b["):
            if token.endswith("A"):
                row = max(0, row - int(token[2:-1] or 1))
            elif token == "\x1b[2K":
                lines[row] = ""
        else:
            lines[row] = lines[row][:col].ljust(col) + token + lines[row][col + len(token):]
            col += len(token)
    return lines


def test_on_a_terminal_personalize_counts_the_previews_pictures_and_leaves_no_load_spinner(
        tiny_sd, face, tmp_path, monkeypatch):
    """Review DA, finding 1: the preview (minutes for SD1.5 on a CPU) drew nothing of its own, so the terminal sat
    on the finished training bar. Its pictures are counted on one bar across both rows (8 here: 2 rows of the 4
    preview prompts), and the spinner of the second row's model load is gone once
    that load ends."""
    screen = terminal()
    monkeypatch.setattr(lowdim_cli.main, "err", screen)  # the spinners' console
    monkeypatch.setattr(runs, "bar_console", lambda: screen)  # the bars', the same terminal
    args = personalize_args(tiny_sd, face, tmp_path / "p")
    args.remove("--no-preview")
    assert main([*args, "--preview-steps", "1", "--preview-draw", "1", "--preview-draw", "te=0"]) == 0
    drawn = screen.file.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)  # the bar's colours out
    pictures = [int(done) for done in re.findall(r"generating \S+ (\d+)/8\b", plain)]
    assert pictures and max(pictures) == 8, "no bar counted the preview's 8 pictures"
    assert {4, 8} <= set(pictures), "the bar does not go on over both rows"
    after_load = plain[plain.rindex("loading the model"):]
    assert re.search(r"generating \S+ [4-8]/8\b", after_load), "no bar for the row drawn after the load"
    assert not [line for line in screen_after(drawn) if "loading the model" in line or "generating" in line]


@pytest.mark.parametrize("progress", [True, False])
def test_from_python_the_previews_bar_draws_as_the_runs_bars(tiny_sd, face, tmp_path, monkeypatch, progress):
    """progress=False (the web UI's job threads run so) draws no preview bar either."""
    from lowdim_sd.personalize import PersonalizeJob, personalize

    bars = terminal()
    monkeypatch.setattr(runs, "bar_console", lambda: bars)
    personalize(PersonalizeJob(model=str(tiny_sd), image=face, steps=1, preview_steps=1, crop=False,
                               out=tmp_path / "p"), progress=progress)
    assert ("generating" in bars.file.getvalue()) is progress
