"""`lowdim export --overwrite` replaces only an earlier export (review DT 1): it replaced whatever sat at -o, a
lowdim adapter (a trained result) or a whole merged model, as merge's --overwrite does not. Anything else is
refused in one line naming the file and what it is, and left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.export import ExportError, export_adapter
from lowdim_sd.ldm_checkpoint import METADATA as LDM_MARK
from lowdim_sd.merged_model import RECORD_KEY

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def lora(tmp_path) -> Path:
    model = nn.ModuleDict({"unet": nn.ModuleDict({"time_embedding": nn.ModuleDict({"linear_1": nn.Linear(4, 4)})})})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.time_embedding.linear_1"])
    return lowdim.save_adapter(tmp_path / "me.safetensors", model, token="zwx")


def _another_adapter(tmp_path: Path) -> Path:
    model = nn.ModuleDict({"unet": nn.ModuleDict({"conv_in": nn.Linear(4, 4)})})
    lowdim.inject(model, lowdim.get_space("lora", rank=1), ["unet.conv_in"])
    return lowdim.save_adapter(tmp_path / "trained.safetensors", model, token="sks")


def _merged_model(tmp_path: Path) -> Path:
    path = tmp_path / "merged.safetensors"
    record = {"base_model": "tinyfaces", "adapters": [], "tokens": []}
    save_file({"model.diffusion_model.conv_in.weight": torch.ones(2, 2)}, str(path),
              metadata={**LDM_MARK, RECORD_KEY: json.dumps(record)})
    return path


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.safetensors"
    path.write_text("my notes, saved under the wrong name\n")
    return path


def _refused_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert "wrote" not in captured.out
    return " ".join(lines[0].split())


@pytest.mark.parametrize(("victim", "said"), [(_another_adapter, "lowdim adapter"),
                                             (_merged_model, "lowdim merge wrote"),
                                             (_text, "text")], ids=["adapter", "merged", "text"])
@pytest.mark.parametrize("flags", [["--overwrite"], []], ids=["overwrite", "plain"])
def test_export_refuses_to_replace_what_export_did_not_write(lora, tmp_path, capsys, victim, said, flags):
    target = victim(tmp_path)
    before = target.read_bytes()
    assert main(["export", str(lora), "-o", str(target), "--format", "kohya", *flags]) == 1
    line = _refused_line(capsys)
    assert str(target) in line and said in line and "not an earlier export" in line, line
    assert "pass --overwrite" not in line  # --overwrite would not replace it either
    assert target.read_bytes() == before


def test_export_overwrite_replaces_an_earlier_export(lora, tmp_path, capsys):
    target = tmp_path / "me.lora.safetensors"
    assert main(["export", str(lora), "-o", str(target), "--format", "diffusers"]) == 0
    assert main(["export", str(lora), "-o", str(target), "--format", "kohya"]) == 1  # no --overwrite: kept
    assert "already exists; pass --overwrite" in " ".join(capsys.readouterr().err.split())
    assert main(["export", str(lora), "-o", str(target), "--format", "kohya", "--overwrite"]) == 0
    from safetensors import safe_open

    with safe_open(str(target), framework="pt") as handle:
        assert handle.metadata()["lora_format"] == "kohya"


def test_export_adapter_from_python_refuses_an_adapter_at_out_path(lora, tmp_path):
    target = _another_adapter(tmp_path)
    before = target.read_bytes()
    with pytest.raises(ExportError, match="not an earlier export") as refused:
        export_adapter(lora, target, "kohya")  # overwrite=True by default
    assert str(target) in str(refused.value) and "\n" not in str(refused.value)
    assert target.read_bytes() == before


def test_the_source_itself_is_still_refused_as_the_source(lora, capsys):
    with pytest.raises(ExportError, match="overwrite the source adapter"):
        export_adapter(lora, lora, "kohya")
    assert main(["export", str(lora), "-o", str(lora), "--overwrite"]) == 1
    assert "refusing to overwrite the source adapter with its export" in _refused_line(capsys)
