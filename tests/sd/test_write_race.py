"""Two runs writing one output at once (`lowdim merge -o SAME`, `lowdim export -o SAME`): both pass the "already
exists" check, and without --overwrite the one that publishes second must be refused in one line and leave the
first one's output as it was, never replace it. The race is made deterministic: the other run's output appears
after the check, while this run writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

import lowdim
import lowdim.files
from lowdim.atomic import replace_folder
from lowdim_cli.main import main
from lowdim_sd.export import ExportError, export_adapter
from lowdim_sd.loading import load_sd
from lowdim_sd.merged_model import RECORD
from lowdim_sd.modes import resolve_layers

pytestmark = pytest.mark.usefixtures("one_thread")
WINNER = b"the other run's model"


@pytest.fixture(scope="module")
def adapter(tiny_sd, tmp_path_factory) -> Path:
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    return lowdim.save_adapter(tmp_path_factory.mktemp("adapter") / "me.safetensors", view, "default", token="zwx")


@pytest.fixture
def lora(tmp_path) -> Path:
    model = nn.ModuleDict({"unet": nn.ModuleDict({"time_embedding": nn.ModuleDict({"linear_1": nn.Linear(4, 4)})})})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.time_embedding.linear_1"])
    return lowdim.save_adapter(tmp_path / "adapter.safetensors", model, token="zwx")


@pytest.fixture
def other_file_appears(monkeypatch):
    """Once this run's safetensors temp is finished, the other run's file appears at its target."""
    real = lowdim.files.sort_header_metadata

    def finish_then_lose(temp):
        real(temp)
        target = Path(temp).parent.parent / Path(temp).name
        if not target.exists():
            target.write_bytes(WINNER)

    monkeypatch.setattr(lowdim.files, "sort_header_metadata", finish_then_lose)


@pytest.fixture
def other_folder_appears(monkeypatch):
    """Once this run's staged folder is finished, the other run's merge folder appears at its target."""
    def lose_then_publish(staging, out, replace=True):
        if not out.exists():
            _winner_folder(out)
        return replace_folder(staging, out, replace)

    monkeypatch.setattr("lowdim_sd.merged_model.replace_folder", lose_then_publish)


def _winner_folder(out: Path) -> None:
    out.mkdir()
    (out / "model_index.json").write_text("{}")
    (out / RECORD).write_text(json.dumps({"base_model": "x", "adapters": [], "tokens": []}))


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "wrote" not in captured.out
    return " ".join(err[0].split())


def _merge(model, adapter, out, fmt, *flags) -> int:
    return main(["merge", "-m", str(model), "-a", str(adapter), "-o", str(out), "--format", fmt, *flags])


def test_a_single_file_merge_that_loses_the_race_is_refused_and_keeps_the_winner(
        tiny_sd, adapter, tmp_path, capsys, other_file_appears):
    out = tmp_path / "m.safetensors"
    assert _merge(tiny_sd, adapter, out, "single-file") == 1
    line = _one_line(capsys)
    assert str(out) in line and "already exists" in line and "--overwrite" in line
    assert out.read_bytes() == WINNER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp left


def test_a_diffusers_merge_that_loses_the_race_is_refused_and_keeps_the_winner(
        tiny_sd, adapter, tmp_path, capsys, other_folder_appears):
    out = tmp_path / "MD"
    assert _merge(tiny_sd, adapter, out, "diffusers") == 1
    line = _one_line(capsys)
    assert str(out) in line and "already exists" in line and "--overwrite" in line
    winner = tmp_path / "winner"
    _winner_folder(winner)
    assert _tree(out) == _tree(winner)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MD", "winner"]  # no staging left


def test_with_overwrite_a_merge_still_replaces_what_it_finds(tiny_sd, adapter, tmp_path, capsys, other_file_appears):
    out = tmp_path / "m.safetensors"
    assert _merge(tiny_sd, adapter, out, "single-file", "--overwrite") == 0, capsys.readouterr().err
    assert out.read_bytes() != WINNER


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_an_export_that_loses_the_race_is_refused_and_keeps_the_winner(lora, tmp_path, other_file_appears, fmt):
    out = tmp_path / "lora.safetensors"
    with pytest.raises(ExportError) as refused:
        export_adapter(lora, out, fmt, overwrite=False)
    line = str(refused.value)
    assert "\n" not in line and str(out) in line and "already exists" in line
    assert out.read_bytes() == WINNER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.safetensors", "lora.safetensors"]


def test_an_export_with_overwrite_replaces_as_before(lora, tmp_path, other_file_appears):
    out = tmp_path / "lora.safetensors"
    export_adapter(lora, out, "kohya")
    assert out.read_bytes() != WINNER
