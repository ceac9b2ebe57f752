"""What model loading promises and no other test pinned (review CT's surviving mutants M20, M21, M25, M26, M27,
M33): each test fails when that promise is dropped."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from lowdim.registry import get_registry
from lowdim_sd import pipeline_parts
from lowdim_sd.given_model import same_device
from lowdim_sd.loading import ModelLoadError, load_sd
from lowdim_sd.model_names import canonical_model, config_source


@pytest.mark.parametrize("model", ["./no-such-model", "../no-such-model", ".hidden-model"])
def test_a_missing_relative_path_is_no_such_file_not_a_hub_id(model, monkeypatch, tmp_path):
    """M20: no hub lookup (seconds offline, and the wrong cause named) for a path that is not there."""
    monkeypatch.chdir(tmp_path)

    def no_hub(*args, **kwargs):
        raise AssertionError(f"{model} was looked up as a hub id")

    monkeypatch.setattr(pipeline_parts, "load_cached", no_hub)
    with pytest.raises(ModelLoadError, match="no such model file or folder"):
        load_sd(model, device="cpu", dtype="fp32")


def test_an_existing_ckpt_is_refused_as_a_pickle_with_the_fix(tmp_path):
    """M21: the reason (a pickle) and the fix (convert it), not just 'not a model file'."""
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelLoadError, match="pickle.*convert it to .safetensors"):
        load_sd(str(ckpt), device="cpu", dtype="fp32")


def test_load_sd_hands_back_a_frozen_model(tiny_sd):
    """M33: no gradient of the whole base kept for a caller who runs the pipeline with gradients on."""
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    for part in (model.pipe.unet, model.pipe.text_encoder, model.pipe.vae):
        assert not any(p.requires_grad for p in part.parameters())


def test_a_merged_file_on_a_registered_base_finds_its_configs(tmp_path):
    """M25: a file `lowdim merge -m tinyfaces` wrote loads without --model-config."""
    entry = get_registry().backends["tinyfaces"]
    merged = tmp_path / "m.safetensors"
    save_file({"model.diffusion_model.x": torch.zeros(1)}, str(merged),
              metadata={"format": "pt", "lowdim": "ldm-sd1", "lowdim_base_model": "tinyfaces"})
    assert config_source(str(merged), None) == str(entry.value.source)


def test_a_relative_folder_is_recorded_absolute(tmp_path, monkeypatch):
    """M27: './sd' and '/home/me/sd' are one base model in adapter records."""
    (tmp_path / "sd").mkdir()
    monkeypatch.chdir(tmp_path)
    assert canonical_model("sd") == str((tmp_path / "sd").resolve())
    assert canonical_model("./sd") == canonical_model(str(tmp_path / "sd"))


def test_cuda_and_cuda0_are_one_device_and_cuda1_another():
    """M26: load_sd(device='cuda') names 'cuda' while its weights say 'cuda:0'; checked without a GPU."""
    assert same_device(torch.device("cuda"), torch.device("cuda:0"))
    assert same_device(torch.device("cuda:0"), torch.device("cuda"))
    assert not same_device(torch.device("cuda:0"), torch.device("cuda:1"))
    assert not same_device(torch.device("cuda:0"), torch.device("cpu"))


def test_only_lowdims_own_merged_files_are_read_for_a_base_model(tmp_path):
    """Review CT M28: a checkpoint another tool wrote that happens to carry the key chooses no configs."""
    from lowdim_sd.ldm_checkpoint import stored_base_model

    foreign = tmp_path / "other.safetensors"
    save_file({"model.diffusion_model.x": torch.zeros(1)}, str(foreign),
              metadata={"format": "pt", "lowdim_base_model": "tinyfaces"})
    assert stored_base_model(foreign) is None


def test_a_cpu_whose_flags_cannot_be_read_is_taken_to_have_bf16(monkeypatch):
    """Review CT M07: as cpu_has_bf16 promises; a bf16 training run is then not refused for the CPU."""
    from pathlib import Path

    from lowdim_sd import devices

    real = Path.read_text

    def no_procfs(self, *args, **kwargs):
        if str(self) == "/proc/cpuinfo":
            raise OSError("no procfs")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_procfs)
    assert devices.cpu_has_bf16() is True
    devices.check_training_dtype("cpu", "bf16")
