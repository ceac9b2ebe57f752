"""``lowdim show`` of a folder of pictures ``lowdim generate`` drew, or of a train run's ``checkpoints`` folder
(review DT 6): it said only "a folder, but not a lowdim weight folder (no index.json)". It says what each is: the
pictures' line names eval, which reads them; the checkpoints are shown, their newest step folder by its real step
(session 60's FHI: a checkpoints folder is described, no longer an Error line)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lowdim_cli.main import main


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return " ".join(lines[0].split())


def _pictures(folder: Path) -> Path:
    folder.mkdir()
    (folder / "000-a-face-seed0.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "prompts.json").write_text(json.dumps({"images": [{"image": "000-a-face-seed0.png",
                                                                 "prompt": "a face", "seed": 0}]}))
    return folder


def _step(run: Path, step: int, *, complete: bool = True) -> Path:
    folder = run / "checkpoints" / f"step-{step:06d}"
    folder.mkdir(parents=True)
    save_file({"0": torch.zeros(1)}, str(folder / "trainable.safetensors"), metadata={"step": str(step)})
    if complete:
        (folder / "state.json").write_text(json.dumps({"step": step}))
    return folder


def test_show_of_generated_pictures_says_so_and_gives_the_eval_line(tmp_path, capsys):
    folder = _pictures(tmp_path / "g 2")
    assert main(["show", str(folder)]) == 1
    line = _one_line(capsys)
    assert "pictures lowdim generate drew (prompts.json)" in line, line
    assert f"lowdim eval {shlex.quote(str(folder))} -r FACE" in line
    assert "weight folder" not in line


@pytest.mark.parametrize("steps", [[100], [50, 100, 1_000_000]])
def test_show_of_a_runs_checkpoints_folder_names_its_newest_step(tmp_path, capsys, steps):
    run = tmp_path / "tr-lora"
    for step in steps:
        newest = _step(run, step)
    assert main(["show", str(run / "checkpoints"), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["type"] == "checkpoints_folder" and "lowdim train run" in said["kind"], said["kind"]
    assert said["fields"]["newest"] == str(newest)  # step-1000000, not step-000100 by name order
    assert said["fields"]["checkpoints"]["steps"] == steps


def test_any_other_folder_is_still_not_a_weight_folder(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    assert main(["show", str(tmp_path / "notes")]) == 1
    assert "not a lowdim weight folder (no index.json)" in _one_line(capsys)
    (tmp_path / "checkpoints").mkdir()  # named so, but with no step folder in it
    assert main(["show", str(tmp_path / "checkpoints")]) == 1
    assert "not a lowdim weight folder (no index.json)" in _one_line(capsys)
