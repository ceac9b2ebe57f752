"""A lowdim adapter (or its folder) handed where it does not go: one line saying what it is and what to pass."""

from __future__ import annotations

import shlex

import pytest
import torch
from safetensors.torch import save_file

from lowdim_cli.main import main


@pytest.fixture
def adapter_folder(tiny_sd, face, tmp_path, make_hypernet):
    """The folder `personalize -o me` makes: me/adapter.safetensors and nothing else of ours."""
    out = tmp_path / "me"
    assert main(["personalize", "-m", str(tiny_sd), "-i", str(face), "--hypernet", str(make_hypernet(1)),
                 "--only-hyper", "--no-preview", "--no-crop", "-o", str(out)]) == 0
    return out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_an_adapter_given_as_the_photo_is_named_an_adapter(tiny_sd, tmp_path, adapter_folder, capsys):
    capsys.readouterr()
    adapter = adapter_folder / "adapter.safetensors"
    code = main(["personalize", "-m", str(tiny_sd), "-i", str(adapter), "--no-crop", "-o", str(tmp_path / "x")])
    line = one_error_line(capsys)
    assert code == 1
    assert f"{adapter} is a lowdim adapter, not a photo" in line and "corrupt" not in line
    command = shlex.split(line.split("draw with it: ", 1)[1])  # runs as printed: the model its file records
    assert command[:2] == ["lowdim", "generate"] and "-m" in command
    assert main([*command[1:], "--steps", "1", "-o", str(tmp_path / "drawn")]) == 0


def test_another_safetensors_given_as_the_photo_is_named_safetensors(tiny_sd, tmp_path, capsys):
    other = tmp_path / "weights.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(other))
    code = main(["personalize", "-m", str(tiny_sd), "-i", str(other), "--no-crop", "-o", str(tmp_path / "x")])
    line = one_error_line(capsys)
    assert code == 1
    assert "a .safetensors file, not a photo" in line and "corrupt" not in line


def test_generate_given_the_folder_names_the_adapter_inside(tiny_sd, tmp_path, adapter_folder, capsys):
    capsys.readouterr()
    code = main(["generate", "-m", str(tiny_sd), "-p", "a [V] face", "-a", f"{adapter_folder}/",
                 "-o", str(tmp_path / "g")])
    line = one_error_line(capsys)
    assert code == 1
    assert f"{adapter_folder}/ is a folder; its adapter is {adapter_folder}/adapter.safetensors: pass that" in line


def test_generate_given_a_folder_of_several_adapters_names_them(tiny_sd, tmp_path, adapter_folder, capsys):
    for name in ("b", "c"):
        (adapter_folder / f"{name}.safetensors").write_bytes((adapter_folder / "adapter.safetensors").read_bytes())
    capsys.readouterr()
    code = main(["generate", "-m", str(tiny_sd), "-p", "a [V] face", "-a", str(adapter_folder),
                 "-o", str(tmp_path / "g")])
    line = one_error_line(capsys)
    assert code == 1
    assert all(f"{adapter_folder}/{name}.safetensors" in line for name in ("adapter", "b", "c")), line
