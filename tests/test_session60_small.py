"""Session 60's small items in the core (FHI): a ``--layers`` pattern that meets an embedding is told what the lowdim
command takes (a Python caller keeps the ``lowdim.LayerSet`` advice, which works), and the once-per-file note about an
animated or very large picture is bounded, so a long ``lowdim ui`` server does not remember every upload."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

# --------------------------------------------------------------------------------- --layers on an embedding


def test_a_cli_layers_pattern_on_an_embedding_names_what_the_command_takes(capsys):
    assert main(["inspect", "-m", "tinyfaces", "-s", "lidb", "-l", "*token_embedding*", "--no-files"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    line = err[0]
    assert "'text_encoder.embeddings.token_embedding' is an Embedding, which --layers patterns leave out" in line
    assert "the lowdim command adapts an embedding only as Textual Inversion (--space ti, without --layers" in line
    assert "patterns given as a string or list" not in line  # the Python caller's words
    # The way it names works: Textual Inversion counts the token embedding.
    assert main(["inspect", "-m", "tinyfaces", "-s", "ti", "--no-files", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layer_set"] == "token-embedding"
    assert [(group["group"], group["layers"]) for group in report["groups"]] == [
        ("text encoder token embedding", 1), ("total", 1)]


def test_a_python_caller_keeps_the_layer_set_advice_and_it_works():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4))
    with pytest.raises(LowdimError) as refused:
        lowdim.inject(model, lowdim.get_space("lora", rank=1), "0")
    said = str(refused.value)
    advice = "lowdim.LayerSet('0', ('0',), types=('linear', 'conv1x1', 'embedding'))"
    assert f"which patterns given as a string or list leave out (they take linear and conv1x1 layers): to adapt it, " \
           f"give the targets as {advice}" in said
    assert "--layers" not in said and "--space" not in said
    targets = lowdim.LayerSet("0", ("0",), types=("linear", "conv1x1", "embedding"))  # the advice, as written
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=1), targets)
    assert [layer.name for layer in adapters.info().layers] == ["0"]


# ----------------------------------------------------------------------------- the once-per-file picture note


def _note(path: Path) -> str:
    return f"image {path} is animated (2 frames); using its first frame"


def test_the_once_per_file_note_remembers_the_files_met_last_not_every_one(tmp_path):
    from lowdim_sd.image_limits import note_frames

    first = tmp_path / "first.gif"
    first.write_bytes(b"GIF89a")
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        note_frames(first, 2)
        note_frames(first, 2)  # personalize opens its photo twice: told once
        for number in range(255):  # a long server, told of uploads after it
            note_frames(tmp_path / f"upload-{number}.gif", 2)
        note_frames(first, 2)  # met among the last 256 files: still told once
        for number in range(256):
            note_frames(tmp_path / f"later-{number}.gif", 2)
        note_frames(first, 2)  # 256 other files since it was last met: forgotten, so told again
    lines = [str(warning.message) for warning in told]
    assert lines.count(_note(first)) == 2
    assert len(lines) == 1 + 255 + 256 + 1  # every other file told once
