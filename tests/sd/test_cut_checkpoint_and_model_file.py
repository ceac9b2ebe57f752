"""A training checkpoint's file and a ``--model`` single file cut short, inside their tensor data or inside their
header: one line naming the file cut short and by how much, never safetensors' own words. A checkpoint is told to
resume from the older checkpoint its run folder keeps, or, with none, that the run starts again."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd import checkpoints
from lowdim_sd.checkpoint_reading import optimizer_metadata, read_tensors
from lowdim_sd.loading import ModelLoadError
from lowdim_sd.model_paths import refuse_what_is_not_a_checkpoint

SAFETENSORS_WORDS = ("incomplete metadata", "MetadataIncompleteBuffer", "HeaderTooLarge", "invalid header length",
                     "deserializing", "not fully covered", "not a readable")


def cut_at(path: Path, where: str) -> tuple[int, int]:
    """Cut ``path`` inside its header or inside its tensor data; (bytes it needed, bytes it keeps)."""
    whole = path.read_bytes()
    header_end = 8 + struct.unpack("<Q", whole[:8])[0]
    keep = header_end - 10 if where == "header" else header_end + (len(whole) - header_end) // 2
    path.write_bytes(whole[:keep])
    return (header_end if where == "header" else len(whole)), keep


def cut_words(where: str, needed: int, keep: int) -> str:
    part = "its header alone is" if where == "header" else "its tensors need"
    return f"a .safetensors file cut short ({part} {needed} bytes, the file holds {keep})"


def step(run: Path, number: int, complete: bool = True) -> Path:
    folder = run / "checkpoints" / f"step-{number:06d}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "state.json").write_text(json.dumps({"step": number, "settings": {}}))
    return folder


def assert_one_clean_line(line: str) -> None:
    assert "\n" not in line
    for words in SAFETENSORS_WORDS:
        assert words not in line, line


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_cut_trainable_file_says_to_resume_from_the_older_checkpoint(tmp_path, where):
    step(tmp_path, 2)
    path = step(tmp_path, 4) / "trainable.safetensors"
    save_file({"a": torch.ones(64), "b": torch.zeros(32)}, str(path), metadata={"step": "4"})
    needed, keep = cut_at(path, where)
    with pytest.raises(LowdimError) as error:
        read_tensors(path)
    line = str(error.value)
    assert_one_clean_line(line)
    assert line.startswith(f"{path}: {cut_words(where, needed, keep)}"), line
    assert line.endswith("delete the checkpoint folder step-000004 to resume from step-000002"), line


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_cut_optimizer_file_with_no_older_checkpoint_says_the_run_starts_again(tmp_path, where):
    step(tmp_path, 6, complete=False)  # a later save a stop cut short: no checkpoint to go back to
    parameters = [torch.nn.Parameter(torch.zeros(8))]
    tensors = {"0.exp_avg": torch.ones(8), "0.exp_avg_sq": torch.ones(8), "0.step": torch.tensor(1.0)}
    path = step(tmp_path, 1) / "optimizer.safetensors"
    save_file(tensors, str(path), metadata=optimizer_metadata(1, parameters, tensors))
    needed, keep = cut_at(path, where)
    with pytest.raises(LowdimError) as error:
        checkpoints.load_optimizer(torch.optim.AdamW(parameters), parameters, path)
    line = str(error.value)
    assert_one_clean_line(line)
    assert line.startswith(f"{path}: {cut_words(where, needed, keep)}"), line
    assert "delete the checkpoint folder step-000001" in line and "starts again from step 0" in line, line


def test_a_whole_damaged_checkpoint_keeps_its_advice(tmp_path):
    path = step(tmp_path, 1) / "trainable.safetensors"
    path.write_bytes(struct.pack("<Q", 10) + b"{not json}")
    with pytest.raises(LowdimError, match="delete the checkpoint folder step-000001 to resume from an older one$"):
        read_tensors(path)


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_cut_model_file_is_one_line_in_the_model_check_and_the_cli(tmp_path, capsys, where):
    path = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.a": torch.zeros(1000)}, str(path))
    needed, keep = cut_at(path, where)
    said = f"{path}: this is {cut_words(where, needed, keep)}; copy or download it again"
    with pytest.raises(ModelLoadError) as error:
        refuse_what_is_not_a_checkpoint(path)
    assert_one_clean_line(str(error.value))
    assert str(error.value).startswith(said), str(error.value)
    capsys.readouterr()
    assert main(["generate", "-m", str(path), "-p", "x", "-o", str(tmp_path / "g")]) == 1
    err = capsys.readouterr().err
    shown = " ".join(err.split())
    assert "Traceback" not in err and shown.count("Error: ") == 1 and said in shown, err
    assert_one_clean_line(shown)
