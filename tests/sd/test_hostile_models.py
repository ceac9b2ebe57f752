"""Model folders and files that would make diffusers run pickles or read outside the weights folder are
refused before diffusers sees them, each with one line naming the file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_cli.main import main
from lowdim_sd.loading import ModelLoadError, load_pipeline

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture
def copied(tiny_sd, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))


def test_a_folder_with_pickle_weights_is_refused_with_the_documented_line(copied, capsys):
    unet = copied / "unet"
    torch.save(load_file(unet / WEIGHTS), unet / "diffusion_pytorch_model.bin")  # diffusers would load this
    (unet / WEIGHTS).unlink()
    message = (f"{unet / 'diffusion_pytorch_model.bin'}: pickle weights can run code when loaded; lowdim loads "
               f".safetensors only")
    with pytest.raises(ModelLoadError, match=message.replace(".", r"\.")):
        load_pipeline(str(copied), torch.float32)
    code = main(["generate", "-m", str(copied), "-p", "a photo", "--out", str(copied.parent / "images")])
    err = capsys.readouterr().err
    assert code == 1 and message in " ".join(err.split()) and "Traceback" not in err


def test_pickles_next_to_safetensors_are_never_read(copied, monkeypatch):
    unet = copied / "unet"
    (unet / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not read")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was loaded"))
    assert load_pipeline(str(copied), torch.float32).unet is not None


@pytest.mark.parametrize("shard", ["../../outside.safetensors", "/etc/outside.safetensors", "sub/../../x.safetensors"])
def test_index_shard_paths_must_stay_inside_the_weights_folder(copied, shard):
    unet = copied / "unet"
    (copied.parent / "outside.safetensors").write_bytes((unet / WEIGHTS).read_bytes())
    (unet / WEIGHTS).unlink()
    weight_map = dict.fromkeys(load_file(copied.parent / "outside.safetensors"), shard)
    (unet / f"{WEIGHTS}.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with pytest.raises(ModelLoadError, match=f"shard path '{shard}' leaves the weights folder"):
        load_pipeline(str(copied), torch.float32)


def test_index_shards_must_be_present_safetensors(copied):
    index = copied / "unet" / f"{WEIGHTS}.index.json"
    index.write_text(json.dumps({"weight_map": {"conv_in.weight": "part-1.safetensors"}}))
    with pytest.raises(ModelLoadError, match="shard 'part-1.safetensors' is missing"):
        load_pipeline(str(copied), torch.float32)
    index.write_text(json.dumps({"weight_map": {"conv_in.weight": "part-1.bin"}}))
    with pytest.raises(ModelLoadError, match="shard 'part-1.bin' is not a .safetensors file"):
        load_pipeline(str(copied), torch.float32)
    index.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a readable shard index"):
        load_pipeline(str(copied), torch.float32)


def test_a_picture_renamed_safetensors_is_named_without_talk_of_pickles(tmp_path):
    from PIL import Image

    path = tmp_path / "model.safetensors"
    Image.new("RGB", (8, 8)).save(path, format="PNG")
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(path), torch.float32)
    assert str(refused.value) == (f"{path}: this is a PNG image, not safetensors; pass a model checkpoint, "
                                  f"or a diffusers folder")


def test_a_pickle_renamed_safetensors_checkpoint_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ModelLoadError, match="model.safetensors: this is a zip archive .*convert it to a real"):
        load_pipeline(str(path), torch.float32)
    save_file({"model.diffusion_model.x": torch.zeros(1)}, str(path))  # a real safetensors file goes on to diffusers
    with pytest.raises(ModelLoadError, match="could not load it as an SD1.x checkpoint"):
        load_pipeline(str(path), torch.float32)


def a_lowdim_file(folder: Path, fmt: str, **metadata: str) -> Path:
    path = folder / f"{fmt}.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": fmt, **metadata})
    return path


@pytest.mark.parametrize(("make", "said"), [
    (lambda folder: folder / "face.png", "an image, not a model; --model takes a registered name"),
    (lambda folder: folder / "FACE.JPG", "an image, not a model; --model takes a registered name"),  # CW2 P01
    (lambda folder: folder / "notes.txt", "not a model file; --model takes"),
    (lambda folder: a_lowdim_file(folder, "lowdim.adapter", base_model="tinyfaces"),
     r"a lowdim adapter, not a model: pass it with --adapter \(-a\), and its base model \(tinyfaces\) with --model"),
    (lambda folder: a_lowdim_file(folder, "lowdim.hypernet"), "a lowdim hypernetwork, not a model: pass it with "
                                                             "--hypernet"),
    (lambda folder: a_lowdim_file(folder, "lowdim.weights"), "a shard of a lowdim weight dataset"),
    (lambda folder: a_lowdim_file(folder, "kohya-lora", lora_format="kohya"), "a kohya LoRA, not a model"),
    (lambda folder: a_lowdim_file(folder, "vae"), r"no SD1.x UNet in it \(no model.diffusion_model.\* tensors\)"),
])
def test_a_file_that_is_no_model_is_named_for_what_it_is(tmp_path, make, said):
    path = make(tmp_path)
    if not path.exists():
        path.write_bytes(b"not a model")
    with command_line(), pytest.raises(ModelLoadError, match=f"^{re.escape(str(path))}: .*{said}"):
        load_pipeline(str(path), torch.float32)  # the command's words (from Python: tests/sd/test_load_words.py)


def test_a_checkpoint_cut_short_is_named_unreadable_not_offline(tmp_path):
    whole = tmp_path / "whole.safetensors"
    save_file({"model.diffusion_model.x": torch.zeros(1000)}, str(whole))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match=r"cut\.safetensors: this is a \.safetensors file cut short \(its tensors "
                                             r"need 4\d\d\d bytes, the file holds 2000\); copy or download it again"):
        load_pipeline(str(cut), torch.float32)


def inflated_unet_config(folder: Path, factor: int = 512) -> None:
    """The UNet's config.json edited to describe a model ~250 000 times its weights (2 KB of text)."""
    config_path = folder / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["block_out_channels"] = [width * factor for width in config["block_out_channels"]]
    config_path.write_text(json.dumps(config))


def test_a_config_describing_a_far_bigger_model_than_its_weights_is_refused_before_it_is_built(copied):
    inflated_unet_config(copied)  # diffusers itself would try to allocate about 38 GB here
    with pytest.raises(ModelLoadError, match=r"unet/config.json: describes a UNet2DConditionModel of \d+ values, but "
                                             r"its weights hold \d+; refusing to build it"):
        load_pipeline(str(copied), torch.float32)


def test_a_config_no_model_can_be_built_from_is_one_line_naming_it(copied, capsys):
    config_path = copied / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "down_block_types": config["down_block_types"][:1]}))
    with pytest.raises(ModelLoadError, match=r"unet/config.json: no UNet2DConditionModel can be built from it "
                                             r"\(Must provide the same number of `down_block_types`"):
        load_pipeline(str(copied), torch.float32)
    assert main(["generate", "-m", str(copied), "-p", "a face", "-o", str(copied.parent / "out")]) == 1
    assert "unet/config.json: no UNet2DConditionModel can be built" in capsys.readouterr().err


def test_absurd_depths_in_a_config_are_refused(copied):
    config_path = copied / "text_encoder" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "num_hidden_layers": 10**6}))
    with pytest.raises(LowdimError, match="config 'num_hidden_layers' is 1000000; lowdim accepts at most 512"):
        load_pipeline(str(copied), torch.float32)


def test_a_model_config_folder_cannot_inflate_a_single_file_checkpoint(copied, tmp_path):
    from lowdim_sd.ldm_checkpoint import save_single_file

    checkpoint = save_single_file(load_pipeline(str(copied), torch.float32), tmp_path / "model.safetensors")
    inflated_unet_config(copied)
    with pytest.raises(ModelLoadError, match="describes a UNet2DConditionModel"):
        load_pipeline(str(checkpoint), torch.float32, config=str(copied))


@pytest.mark.parametrize("typed, meant", [("tinyfacez", "tinyfaces"), ("SD15", "sd15"), ("sd-15", "sd15")])
def test_a_misspelt_model_name_is_one_line_naming_the_close_one_without_a_hub_lookup(
        typed, meant, tmp_path, capsys, monkeypatch):
    import lowdim_sd.loading

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", lambda *a, **k: pytest.fail("the hub was asked"))
    code = main(["generate", "-m", typed, "-p", "a photo", "--out", str(tmp_path / "images")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "Traceback" not in err
    assert f"unknown model '{typed}'; did you mean {meant}?" in err


def test_a_bare_name_far_from_every_registered_one_still_goes_to_the_hub(monkeypatch):
    import lowdim_sd.loading

    asked = []

    def hub(source, *args, **kwargs):
        asked.append(source)
        raise ModelLoadError("offline")

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", hub)
    with pytest.raises(ModelLoadError, match="offline"):
        lowdim_sd.loading.load_sd("my-own-model", device="cpu")
    assert asked == ["my-own-model"]
