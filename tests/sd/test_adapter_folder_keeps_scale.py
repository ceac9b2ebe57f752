"""A run folder given as ``-a FOLDER:SCALE`` (review DC 7): the line naming the adapter inside keeps the scale as
typed, so the suggested argument, copied, draws at the scale asked for; an empty folder is named path first, as
the others are."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.generate import parse_adapter_arg


def adapter_in(folder: Path, name: str = "adapter") -> Path:
    model = nn.Sequential(nn.Linear(4, 4))
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    folder.mkdir(exist_ok=True)
    return lowdim.save_adapter(folder / f"{name}.safetensors", model)


def error_line(capsys, *args: str) -> str:
    capsys.readouterr()
    code = main(["generate", "-m", "tinyfaces", "-p", "x", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("typed", ["0.5", ".50", "2"])
def test_a_run_folder_with_a_scale_suggests_its_adapter_with_that_scale(tmp_path, capsys, typed):
    adapter = adapter_in(tmp_path / "s0")
    line = error_line(capsys, "-a", f"{tmp_path / 's0'}:{typed}", "-o", str(tmp_path / "g"))
    assert line.endswith(f"{tmp_path / 's0'}/ is a folder; its adapter is {adapter}: pass {adapter}:{typed}"), line
    suggested = line.rsplit("pass ", 1)[1]
    assert parse_adapter_arg(suggested) == (adapter, float(typed))  # copied, it draws at the scale typed


def test_a_run_folder_without_a_scale_keeps_its_line(tmp_path, capsys):
    adapter = adapter_in(tmp_path / "s0")
    line = error_line(capsys, "-a", str(tmp_path / "s0"), "-o", str(tmp_path / "g"))
    assert line.endswith(f"{tmp_path / 's0'}/ is a folder; its adapter is {adapter}: pass that"), line


def test_a_folder_of_several_adapters_says_to_keep_the_scale(tmp_path, capsys):
    for name in ("a", "b"):
        adapter_in(tmp_path / "s0", name)
    line = error_line(capsys, "-a", f"{tmp_path / 's0'}:0.5", "-o", str(tmp_path / "g"))
    assert f"{tmp_path / 's0'}/ is a folder of 2 adapters" in line and ":0.5" in line, line


@pytest.mark.parametrize("scale", ["", ":0.5"])
def test_an_empty_folder_is_named_path_first(tmp_path, capsys, scale):
    (tmp_path / "empty").mkdir()
    line = error_line(capsys, "-a", f"{tmp_path / 'empty'}{scale}", "-o", str(tmp_path / "g"))
    assert line.endswith(f"{tmp_path / 'empty'}/ is a folder with no lowdim adapter in it; expected a .safetensors "
                         f"adapter file"), line


def test_a_folder_given_to_export_is_named_the_same_way(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main(["export", str(tmp_path / "empty")]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'empty'}/ is a folder with no lowdim adapter in it" in said, said
