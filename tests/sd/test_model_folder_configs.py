"""A model folder's scheduler config, its UNet's picture size and its model_index.json entries are checked
before diffusers builds or imports anything: an edited 1 KB file is one line naming it, never GBs allocated or a
stranger's module imported."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from lowdim_cli.main import main
from lowdim_sd.loading import ModelLoadError, load_pipeline


@pytest.fixture
def copied(tiny_sd, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))


def edit(path: Path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(("key", "value", "why"), [
    ("num_train_timesteps", 10**9, "is 1000000000; lowdim accepts an integer from 1 to 10000"),
    ("num_train_timesteps", 16_777_216, "is 16777216; lowdim accepts an integer from 1 to 10000"),
    ("num_train_timesteps", "many", "is 'many'; lowdim accepts an integer from 1 to 10000"),
    ("num_train_timesteps", 0, "is 0; lowdim accepts an integer from 1 to 10000"),
    ("num_train_timesteps", True, "is True; lowdim accepts an integer from 1 to 10000"),
    ("beta_start", "x", "is 'x'; lowdim accepts a number from 0 to 1"),
    ("beta_end", 1e308 * 10, "is inf; lowdim accepts a number from 0 to 1"),
    ("trained_betas", [0.1, "x"], "is not a list of numbers from 0 to 1"),
])
def test_a_scheduler_config_past_any_sd_s_is_refused_before_anything_is_built(copied, key, value, why, monkeypatch):
    config = copied / "scheduler" / "scheduler_config.json"
    edit(config, **{key: value})
    monkeypatch.setattr(torch, "linspace", lambda *a, **k: pytest.fail("diffusers built the schedule"))
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(copied), torch.float32)
    assert str(refused.value).startswith(f"{config}: '{key}' {why}")


def test_the_cli_says_the_scheduler_line_with_no_traceback(copied, capsys):
    config = copied / "scheduler" / "scheduler_config.json"
    edit(config, num_train_timesteps=10**9)
    code = main(["generate", "-m", str(copied), "-p", "a face", "--steps", "1", "--out", str(copied.parent / "o")])
    err = capsys.readouterr().err
    assert code == 1 and f"{config}: 'num_train_timesteps' is 1000000000" in " ".join(err.split())
    assert "Traceback" not in err


@pytest.mark.parametrize("size", [2**20, 2049, [8, 2**20]])
def test_a_unet_drawing_past_4096_pixels_is_refused_at_load(copied, size):
    config = copied / "unet" / "config.json"
    edit(config, sample_size=size)  # the tiny VAE scales latents by 2: 2049 x 2 = 4098 pixels
    with pytest.raises(ModelLoadError, match=r"unet/config\.json: 'sample_size' is .* pictures of .* pixels a "
                                             r"side by default; lowdim accepts at most 4096"):
        load_pipeline(str(copied), torch.float32)


@pytest.mark.parametrize("size", ["big", [8], None])
def test_a_unet_sample_size_that_is_no_size_is_refused(copied, size):
    config = copied / "unet" / "config.json"
    edit(config, sample_size=size)
    with pytest.raises(ModelLoadError, match=r"unet/config\.json: 'sample_size' is .*; lowdim accepts a positive "
                                             r"integer or \[height, width\]"):
        load_pipeline(str(copied), torch.float32)


def test_sd_s_own_sizes_still_load(copied):
    edit(copied / "unet" / "config.json", sample_size=[8, 16])  # 16 x 32 pixels
    edit(copied / "scheduler" / "scheduler_config.json", num_train_timesteps=1000, trained_betas=None)
    assert load_pipeline(str(copied), torch.float32).unet is not None


@pytest.mark.parametrize(("entry", "words"), [
    (["os", "system"], "lowdim loads diffusers or transformers classes only"),
    (["diffusers", 5], "lowdim loads diffusers or transformers classes only"),
    ("diffusers", "lowdim loads diffusers or transformers classes only"),
    (["diffusers", "UNet2DConditionModel", "x"], "lowdim loads diffusers or transformers classes only"),
    (["diffusers", "no_such_class"], "diffusers has no class 'no_such_class'"),
    (["diffusers", None], "lowdim loads diffusers or transformers classes only"),
])
def test_a_model_index_entry_naming_any_other_module_is_refused_before_it_is_imported(copied, entry, words):
    index = copied / "model_index.json"
    sys.modules.pop("antigravity", None)  # importing it opens a web browser: a module no model folder may name
    edit(index, unet=entry, vae=["antigravity", "geo"])
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(copied), torch.float32)
    message = str(refused.value)
    assert message.startswith(f"{index}: part 'unet' is ") and words in message
    assert "antigravity" not in sys.modules


def test_unused_parts_may_name_sd_s_own_safety_checker(copied):
    edit(copied / "model_index.json", safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
         feature_extractor=["transformers", "CLIPImageProcessor"])
    assert load_pipeline(str(copied), torch.float32).unet is not None


def test_a_config_nested_900_deep_is_one_line_not_a_recursion_error(copied):
    config = copied / "unet" / "config.json"
    text = config.read_text().rstrip().removesuffix("}") + ', "x": ' + "[" * 900 + "]" * 900 + "}"
    config.write_text(text)
    with pytest.raises(ModelLoadError, match=rf"{config}: not readable JSON \(JSON nested too deeply"):
        load_pipeline(str(copied), torch.float32)
