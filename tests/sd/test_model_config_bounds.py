"""The edges of a model folder's config checks (review BS9-BS11): each bound refuses the first value past it and
takes the value it states, and a ``--model-config`` folder's model_index.json is checked as a model folder's is.
An edited scheduler or UNet config is one line naming it, never NaN pictures or GBs allocated at generate."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from lowdim_sd.loading import ModelLoadError, load_pipeline
from lowdim_sd.pipeline_parts import MAX_TIMESTEPS, check_model_folder, check_picture_size


@pytest.fixture
def copied(tiny_sd, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))


@pytest.fixture(scope="module")
def single_file(tmp_path_factory) -> Path:
    """The tiny pipeline as one LDM checkpoint, which a ``--model-config`` folder describes."""
    from lowdim_sd.ldm_checkpoint import save_single_file
    from lowdim_sd.tiny import build_tiny_pipeline

    return save_single_file(build_tiny_pipeline(0), tmp_path_factory.mktemp("single") / "model.safetensors")


def edit(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(("key", "value", "why"), [
    ("num_train_timesteps", MAX_TIMESTEPS + 1, "is 10001; lowdim accepts an integer from 1 to 10000"),
    ("beta_end", 1.5, "is 1.5; lowdim accepts a number from 0 to 1"),  # negative alphas: every picture NaN
    ("beta_start", -0.1, "is -0.1; lowdim accepts a number from 0 to 1"),
    ("trained_betas", [0.5, 1.5], "is not a list of numbers from 0 to 1"),
    ("trained_betas", [0.5] * (MAX_TIMESTEPS + 1), "is not a list of numbers from 0 to 1 (or null), at most 10000"),
])
def test_a_scheduler_value_just_past_its_bound_is_refused(copied, key, value, why):
    config = copied / "scheduler" / "scheduler_config.json"
    edit(config, **{key: value})
    with pytest.raises(ModelLoadError) as refused:
        check_model_folder(copied)
    assert str(refused.value).startswith(f"{config}: '{key}' {why}")


@pytest.mark.parametrize("changes", [
    {"num_train_timesteps": MAX_TIMESTEPS},  # the maximum the line states
    {"num_train_timesteps": 1, "beta_start": 0, "beta_end": 1},
    {"trained_betas": [0.5] * MAX_TIMESTEPS},
])
def test_a_scheduler_at_its_stated_bounds_is_taken(copied, changes):
    edit(copied / "scheduler" / "scheduler_config.json", **changes)
    assert check_model_folder(copied) is None


def test_the_largest_schedule_still_loads_and_draws_its_steps(copied):
    edit(copied / "scheduler" / "scheduler_config.json", num_train_timesteps=MAX_TIMESTEPS)
    pipe = load_pipeline(str(copied), torch.float32)
    assert pipe.scheduler.config.num_train_timesteps == MAX_TIMESTEPS


@pytest.mark.parametrize("size", [0, True, [8, 0], [True, 8], -8])
def test_a_sample_size_of_no_pixels_or_a_boolean_is_refused(copied, size):
    config = copied / "unet" / "config.json"
    edit(config, sample_size=size)
    with pytest.raises(ModelLoadError) as refused:
        check_model_folder(copied)
    assert str(refused.value).startswith(f"{config}: 'sample_size' is {json.dumps(size)}; lowdim accepts a positive "
                                         f"integer or [height, width]")


@pytest.mark.parametrize(("blocks", "size", "pixels"), [(7, 100, 6400), (3, 1025, 4100), (1, 4097, 4097)])
def test_the_picture_bound_uses_the_vae_s_own_scale(copied, blocks, size, pixels):
    """A VAE of n blocks scales latents by 2**(n-1): SD's 4 blocks by 8, but a 7-block one by 64."""
    edit(copied / "vae" / "config.json", block_out_channels=[16] * blocks)
    config = copied / "unet" / "config.json"
    edit(config, sample_size=size)
    with pytest.raises(ModelLoadError) as refused:
        check_model_folder(copied)
    scale = 2 ** (blocks - 1)
    assert str(refused.value) == (f"{config}: 'sample_size' is {size}, which with the VAE's scale of {scale} means "
                                  f"pictures of {pixels} pixels a side by default; lowdim accepts at most 4096 "
                                  f"(SD1.5 draws 512, SDXL 1024)")


@pytest.mark.parametrize(("blocks", "size"), [(1, 1024), (1, 4096), (4, 512), (7, 64)])
def test_a_picture_within_the_bound_at_the_vae_s_scale_is_taken(copied, blocks, size):
    edit(copied / "vae" / "config.json", block_out_channels=[16] * blocks)
    edit(copied / "unet" / "config.json", sample_size=size)
    # The picture bound alone: the edited VAE config no longer fits its weights, which check_model_folder refuses.
    assert check_picture_size(copied) is None


def test_a_model_config_folder_naming_another_module_is_refused_before_it_is_imported(copied, single_file):
    """``--model-config`` reads the folder's model_index.json too: diffusers imports whatever module an entry names."""
    index = copied / "model_index.json"
    sys.modules.pop("antigravity", None)  # importing it opens a web browser
    edit(index, unet=["antigravity", "geo"])
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(single_file), torch.float32, config=str(copied))
    message = str(refused.value)
    assert message.startswith(f"{index}: part 'unet' is ") and "lowdim loads diffusers or transformers classes only" \
        in message
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize("folder_kind", ["model folder", "model config"])
def test_an_entry_outside_the_pipeline_s_parts_naming_a_module_is_refused(copied, single_file, folder_kind):
    index = copied / "model_index.json"
    edit(index, evil=["os", "system"])
    source, config = (copied, None) if folder_kind == "model folder" else (single_file, str(copied))
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(source), torch.float32, config=config)
    assert str(refused.value).startswith(f"{index}: part 'evil' is [\"os\", \"system\"]; lowdim loads diffusers or "
                                         f"transformers classes only")


def test_a_model_config_folder_given_with_a_tilde_is_the_home_folders(copied, single_file, tmp_path, monkeypatch):
    """``load_sd(config="~/pipe")`` is the folder in the home folder, as ``~`` is for the model itself (review CW2
    P05, P06; the command line expands a quoted ~ in --model-config before it gets here)."""
    from lowdim_sd.loading import load_sd

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(copied / "unet")  # no ./~ here to be taken for the home folder
    model = load_sd(str(single_file), config="~/pipe")
    written = json.loads((copied / "unet" / "config.json").read_text())
    assert model.pipe.unet.config.sample_size == written["sample_size"]
