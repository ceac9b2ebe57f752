"""``lowdim show --json`` is for programs: numbers, booleans and nested objects, never the table's display
strings; the table and its `use it:` line are for people, and that line draws with the phrase the adapter
learned (its looks included); a mistyped model name gets the suggestion `personalize -m` gives."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")
LOOKS = " with pale skin, ginger sidesweep hair and sunglasses"
HYPERNET = {"file": "hypernet.safetensors", "sha256": "ddf47fe18a97408b", "iterations": None, "bases_seed": 0}


def _adapter(path, **extra):
    """An adapter with personalize's recipe (lowdim_sd.personalize.recipe) in its metadata."""
    model = nn.ModuleDict({"unet": nn.ModuleDict({"time_embedding": nn.ModuleDict({"linear_1": nn.Linear(6, 5)})})})
    lowdim.inject(model, lowdim.get_space("lidb", a=4, b=3), ["unet.time_embedding.linear_1"], seed=3)
    recipe = {"made_by": "lowdim personalize", "image": "face.png", "hypernet": HYPERNET, "only_hyper": False,
              "steps": 40, "learning_rate": 0.01, "crop": False, "face_index": None, **extra}
    return lowdim.save_adapter(path, model, dtype="fp16", base_model="tinyfaces", token="zwx", extra=recipe)


def _no_display_strings(fields: dict) -> None:
    """No number, boolean, null, list or object hides in a string, and no number is written with commas."""
    for name, value in fields.items():
        if isinstance(value, str):
            assert not re.fullmatch(r"-?\d[\d,]*(\.\d+)?( bytes)?", value.strip()), (name, value)
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            assert isinstance(parsed, str), (name, value)


def test_json_gives_numbers_booleans_and_nested_objects(tmp_path, capsys):
    path = _adapter(tmp_path / "me.safetensors", looks=LOOKS)
    assert main(["show", str(path), "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)["fields"]
    _no_display_strings(fields)
    assert fields["trainable_params"] == lowdim.read_adapter(path).num_params
    assert fields["space"] == {"name": "lidb", "config": json.loads(lowdim.read_adapter(path).metadata["space_config"])}
    assert fields["layers"]["count"] == 1 and fields["seed"] == 3
    assert fields["file"] == {"bytes": path.stat().st_size, "dtype": "fp16"}
    recipe = fields["recipe"]  # one object, as the table's "recipe: ..." rows are one group
    assert recipe["only_hyper"] is False and recipe["steps"] == 40
    assert recipe["hypernet"] == HYPERNET and recipe["face_index"] is None
    assert recipe["looks"] == LOOKS.strip() and fields["token"] == "zwx"
    assert fields["frozen_bases"] == {"stored": False}  # a flag, not the table's sentence
    assert not any(name.startswith("recipe: ") for name in fields)


def test_the_table_keeps_its_display_strings(tmp_path, capsys):
    path = _adapter(tmp_path / "me.safetensors")
    rows = dict(describe(path).rows)
    assert rows["trainable params"] == f"{lowdim.read_adapter(path).num_params:,}"
    assert rows["recipe: only_hyper"] == "false" and rows["recipe: face_index"] == "null"
    assert rows["recipe: hypernet"] == json.dumps(HYPERNET, separators=(",", ":"), sort_keys=True)
    assert rows["file"] == f"{path.stat().st_size:,} bytes, fp16" and rows["space"].startswith("lidb {")
    assert main(["show", str(path)]) == 0
    assert re.search(r"recipe: only_hyper +│ false ", capsys.readouterr().out)


def test_a_hypernetwork_and_an_export_in_json(make_hypernet, tmp_path, capsys):
    from lowdim_sd.export import export_adapter

    hypernet = make_hypernet(2, adapter_seed=7, token="zwx")
    assert main(["show", str(hypernet), "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)["fields"]
    _no_display_strings(fields)
    assert fields["predicts"]["space"] == "lidb" and fields["predicts"]["layer_set"] == "unet+text"
    assert isinstance(fields["predicts"]["config"], dict) and isinstance(fields["predicts"]["layers"], int)
    assert fields["network"]["iterations"] == 2 and fields["training"]["adapter_seed"] == 7
    assert fields["file"]["bytes"] == hypernet.stat().st_size
    exported = export_adapter(_adapter(tmp_path / "me.safetensors"), tmp_path / "k.safetensors", "kohya")
    assert main(["show", str(exported), "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)["fields"]
    _no_display_strings(fields)
    assert isinstance(fields["rank"], int) and fields["tensors"]["count"] == 3 and fields["space"]["name"] == "lidb"


@pytest.mark.parametrize(("extra", "prompt"), [
    ({"looks": LOOKS}, f"a [V] face{LOOKS}"),
    ({"prompt": "a close-up of [V] person", "looks": LOOKS}, f"a close-up of [V] person{LOOKS}"),
    ({"prompt": "a close-up of [V] person"}, "a close-up of [V] person"),
    ({}, "a [V] face"),
])
def test_use_it_draws_with_the_stored_phrase_and_looks(tmp_path, capsys, extra, prompt):
    from shlex import quote

    path = _adapter(tmp_path / "me.safetensors", **extra)
    assert describe(path).use == f"lowdim generate -m tinyfaces -a {path} -p {quote(prompt)}"
    assert main(["show", str(path)]) == 0
    assert f"use it: lowdim generate -m tinyfaces -a {path} -p {quote(prompt)}" in capsys.readouterr().out


def test_a_mistyped_model_name_gets_a_suggestion(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LowdimError, match=r"^tinyface: no such file or folder.*did you mean tinyfaces\?"):
        describe("tinyface")
    assert main(["show", "tinyface"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "did you mean tinyfaces?" in err and "Traceback" not in err
    for far in ("zzzzq", "sub/tinyface", "tinyface.safetensors"):  # not a model's name: no guess
        assert main(["show", far]) == 1
        err = capsys.readouterr().err
        assert f"{far}: no such file or folder" in err and "did you mean" not in err, err


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity"])
def test_json_stays_json_when_a_number_in_the_file_is_not_finite(tmp_path, capsys, text):
    from safetensors_edit import rewrite

    path = rewrite(_adapter(tmp_path / "me.safetensors"), dropout=text, seed=text)
    assert main(["show", str(path), "--json"]) == 0

    def refuse(constant: str):  # what JavaScript's and jq's parsers do with NaN and Infinity
        raise AssertionError(f"{constant} is not JSON")

    fields = json.loads(capsys.readouterr().out, parse_constant=refuse)["fields"]
    assert fields["trained_with_dropout"] == text and fields["seed"] == text


@pytest.mark.parametrize("text", ["abc", "1.5", "-0.1", "nan"])
def test_a_dropout_record_every_load_refuses_is_named_as_the_files_problem(tmp_path, text):
    from safetensors_edit import rewrite

    path = rewrite(_adapter(tmp_path / "me.safetensors"), dropout=text)
    with pytest.raises(LowdimError, match="the dropout in the metadata is not a number"):
        lowdim.read_adapter(path)
    info = describe(path)
    rows = dict(info.rows)
    assert rows["problem"] == (f"the dropout in the metadata is not a number in [0, 1), got {text!r}: "
                               f"every command that loads this file refuses it")
    assert info.use == ""  # no command to suggest: it would refuse the file
    assert "problem" not in dict(describe(rewrite(path, dropout="0.25")).rows)


@pytest.mark.parametrize("damage", ["missing", "short", "long", "extra"])
def test_an_adapter_whose_tensors_do_not_fit_its_layers_is_named_as_the_files_problem(tmp_path, damage):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = _adapter(tmp_path / "me.safetensors")
    with safe_open(str(path), framework="pt") as file:
        tensors, metadata = {key: file.get_tensor(key) for key in file.keys()}, file.metadata()  # noqa: SIM118
    key = sorted(tensors)[0]
    if damage == "missing":
        del tensors[key]
    elif damage == "extra":
        tensors["stray"] = tensors[key].clone()
    else:
        tensors[key] = tensors[key][:-1] if damage == "short" else torch.cat([tensors[key], tensors[key][:1]])
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(LowdimError) as refused:
        lowdim.read_adapter(path)  # what every command that loads it does
    info = describe(path)
    problem = dict(info.rows)["problem"]
    assert problem.endswith("every command that loads this file refuses it") and info.use == ""
    assert problem.startswith(str(refused.value).removeprefix(f"{path}: "))  # in the load's own words
