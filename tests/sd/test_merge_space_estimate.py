"""A merge is refused before anything loads or changes when the disk lacks the room its model needs: every shard of
a sharded part counted, a precision variant counted once, a checkpoint's averaged copy (EMA) not at all (review
BD5); and ``save_merged`` from Python is checked as ``lowdim merge`` is."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from safetensors.torch import save_file

from lowdim.errors import LowdimError
from lowdim_sd.merged_model import merged_bytes, save_merged

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_shard_of_a_part_is_counted_and_a_precision_variant_once(tmp_path):
    unet, vae = tmp_path / "unet", tmp_path / "vae"
    unet.mkdir()
    vae.mkdir()
    save_file({"a": torch.zeros(1000)}, str(unet / "diffusion_pytorch_model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(3000)}, str(unet / "diffusion_pytorch_model-00002-of-00002.safetensors"))
    save_file({"a": torch.zeros(1000, dtype=torch.float16)},
              str(unet / "diffusion_pytorch_model.fp16-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(3000, dtype=torch.float16)},
              str(unet / "diffusion_pytorch_model.fp16-00002-of-00002.safetensors"))
    save_file({"c": torch.zeros(500)}, str(vae / "diffusion_pytorch_model.safetensors"))
    save_file({"c": torch.zeros(500, dtype=torch.float16)}, str(vae / "diffusion_pytorch_model.fp16.safetensors"))
    assert merged_bytes(tmp_path, "fp32") == 4500 * 4
    assert merged_bytes(str(tmp_path), "fp16") == merged_bytes(tmp_path, torch.float16) == 4500 * 2


def test_a_checkpoints_averaged_copy_is_left_out(tmp_path):
    save_file({"model.diffusion_model.w": torch.zeros(100), "model_ema.diffusion_modelw": torch.zeros(100)},
              str(tmp_path / "m.safetensors"))
    assert merged_bytes(tmp_path / "m.safetensors", "auto") == 400


def test_a_model_with_no_files_here_is_not_estimated(tmp_path):
    assert merged_bytes("nobody/not-downloaded", "fp32") == 0


def test_save_merged_from_python_is_refused_on_a_disk_too_small_before_the_model_changes(
        model, untrained_adapter, tmp_path, monkeypatch):
    import lowdim_sd.runs

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(lowdim_sd.runs.shutil, "disk_usage", lambda path: usage(2**40, 2**40 - 4096, 4096))
    before = {name: tensor.clone() for name, tensor in model.pipe.unet.state_dict().items()}
    with pytest.raises(LowdimError) as refused:
        save_merged(model, [(untrained_adapter, 1.0)], tmp_path / "m.safetensors")
    said = str(refused.value)
    assert said.startswith(f"out={tmp_path / 'm.safetensors'}: 0.0 MB free, the merge needs about ")
    assert not (tmp_path / "m.safetensors").exists()
    assert all(torch.equal(before[name], tensor) for name, tensor in model.pipe.unet.state_dict().items())
