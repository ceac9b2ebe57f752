"""`lowdim train-hypernet --encoder-config tiny` records its encoder as "tiny", the name the config was given by; a
JSON object records "inline config" as before, and files written before still read and show alike (FHS 5)."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors_edit import rewrite  # tests/, on the path as pytest puts it

from lowdim.hyper import load_hypernet
from lowdim_cli.main import main
from lowdim_sd.hypertrain import TINY_ENCODER

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["--width", "16", "--heads", "2", "--iterations", "1", "--batch-size", "2", "--val-identities", "0",
         "--alpha", "0", "--log-every", "0", "--device", "cpu"]
SHOWN = "random-init from its stored config (vit, hidden 32) (weights in the file)"  # show's row of a JSON one
SHOWN_NAMED = "random-init from its stored config 'tiny' (vit, hidden 32) (weights in the file)"


def _recorded(path) -> str:
    with safe_open(str(path), "pt") as opened:
        return opened.metadata()["encoder"]


def _shown_encoder(path, capsys) -> str:
    assert main(["show", "--json", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["fields"]["image_encoder"]


def _train(weights, out, config: str, *more: str) -> int:
    return main(["train-hypernet", "-w", str(weights), "-o", str(out), "--encoder-config", config, *SMALL, *more])


def test_the_named_config_is_recorded_by_name_and_a_json_one_as_inline(weights, tmp_path, capsys):
    named, inline = tmp_path / "named", tmp_path / "inline"
    assert _train(weights, named, "tiny", "--steps", "1", "--checkpoint-every", "0") == 0
    assert _train(weights, inline, json.dumps(TINY_ENCODER), "--steps", "1", "--checkpoint-every", "0") == 0
    capsys.readouterr()
    assert _recorded(named / "hypernet.safetensors") == "tiny"
    assert _recorded(inline / "hypernet.safetensors") == "inline config"
    # The same network either way: only the header's encoder says how the config was given, and show names it.
    for out, shown in ((named, SHOWN_NAMED), (inline, SHOWN)):
        assert _shown_encoder(out / "hypernet.safetensors", capsys) == shown
        assert load_hypernet(out / "hypernet.safetensors").config.encoder_config["hidden_size"] == 32
    assert load_hypernet(named / "hypernet.safetensors", encoder="tiny") is not None  # a load may expect it by name


def test_a_file_written_before_names_were_recorded_still_reads_and_shows(weights, tmp_path, capsys):
    assert _train(weights, tmp_path / "h", "tiny", "--steps", "1", "--checkpoint-every", "0") == 0
    capsys.readouterr()
    before = rewrite(tmp_path / "h" / "hypernet.safetensors", encoder="inline config")  # as lowdim wrote it then
    assert load_hypernet(before).config.encoder_config["model_type"] == "vit"
    assert _shown_encoder(before, capsys) == SHOWN


def test_a_resumed_run_of_the_named_config_keeps_recording_its_name(weights, tmp_path, capsys):
    out = tmp_path / "h"
    assert _train(weights, out, "tiny", "--steps", "1", "--checkpoint-every", "1") == 0
    assert _recorded(next((out / "checkpoints").glob("step-*")) / "hypernet.safetensors") == "tiny"
    code = _train(weights, out, "tiny", "--steps", "2", "--checkpoint-every", "1", "--resume")
    assert code == 0, capsys.readouterr().err
    assert _recorded(out / "hypernet.safetensors") == "tiny"


def test_the_name_is_no_setting_a_resume_compares(weights, tmp_path, capsys):
    """A run whose settings hold the config itself (started before the name was recorded, or from a JSON object)
    resumes with --encoder-config tiny, the same config: the name is no key of it."""
    out = tmp_path / "h"
    assert _train(weights, out, json.dumps(TINY_ENCODER), "--steps", "1", "--checkpoint-every", "1") == 0
    code = _train(weights, out, "tiny", "--steps", "2", "--checkpoint-every", "1", "--resume")
    assert code == 0, capsys.readouterr().err
    assert _recorded(out / "hypernet.safetensors") == "tiny"
