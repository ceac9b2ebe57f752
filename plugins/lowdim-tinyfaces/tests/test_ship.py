"""Shipping a retrained model: the folder replaces the package's, the network keeps its tensors and takes its name."""

from __future__ import annotations

import json

import pytest
import torch
from lowdim_tinyfaces.ship import main, ship
from safetensors import safe_open
from safetensors.torch import save_file

from lowdim.errors import LowdimError


def retrained_run(root):
    folder = root / "run" / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (folder / "unet" / "weights.bin").write_bytes(b"new unet")
    hyper = root / "run" / "hyper"
    hyper.mkdir()
    tensors = {"bank": torch.arange(6.0).reshape(2, 3)}
    save_file(tensors, hyper / "hypernet.safetensors",
              metadata={"format": "lowdim.hypernet", "model": "tinyfaces-retrained", "space": "lidb"})
    (hyper / "split.json").write_text('{"train": [1, 2]}')
    return folder, hyper / "hypernet.safetensors", tensors


def package(root):
    model_dir = root / "pkg" / "model"
    (model_dir / "vae").mkdir(parents=True)
    (model_dir / "vae" / "stale.bin").write_bytes(b"old")
    return model_dir, root / "pkg" / "hypernet" / "hypernet.safetensors"


def test_the_model_is_replaced_and_the_network_renamed_with_its_tensors_unchanged(tmp_path):
    folder, hypernet, tensors = retrained_run(tmp_path)
    model_dir, hypernet_file = package(tmp_path)
    ship(folder, hypernet, model_dir, hypernet_file)
    assert (model_dir / "unet" / "weights.bin").read_bytes() == b"new unet"
    assert not (model_dir / "vae").exists()  # nothing of the old model survives beside the new one
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["hypernet", "model"]  # no staging left
    with safe_open(str(hypernet_file), "pt") as handle:
        assert handle.metadata() == {"format": "lowdim.hypernet", "model": "tinyfaces", "space": "lidb"}
        assert torch.equal(handle.get_tensor("bank"), tensors["bank"])
    assert (hypernet_file.parent / "split.json").read_text() == '{"train": [1, 2]}'


def test_a_folder_that_is_not_a_model_or_a_file_that_is_not_a_network_changes_nothing(tmp_path):
    folder, hypernet, _ = retrained_run(tmp_path)
    model_dir, hypernet_file = package(tmp_path)
    with pytest.raises(LowdimError, match="no model_index.json"):
        ship(folder.parent / "hyper", hypernet, model_dir, hypernet_file)
    save_file({"w": torch.zeros(1)}, tmp_path / "lora.safetensors", metadata={"format": "pt"})
    with pytest.raises(LowdimError, match="lora.safetensors"):
        ship(folder, tmp_path / "lora.safetensors", model_dir, hypernet_file)
    assert (model_dir / "vae" / "stale.bin").read_bytes() == b"old" and not hypernet_file.exists()


def test_the_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path), str(tmp_path / "hypernet.safetensors")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model_index.json" in err


def test_a_copy_that_fails_halfway_leaves_the_old_model_and_no_staging(tmp_path, monkeypatch):
    import lowdim_tinyfaces.ship as shipping

    folder, hypernet, _ = retrained_run(tmp_path)
    model_dir, hypernet_file = package(tmp_path)

    def copy_then_fail(source, target, **options):
        (target / "unet").mkdir(parents=True)
        raise OSError("disk full")

    monkeypatch.setattr(shipping.shutil, "copytree", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        ship(folder, hypernet, model_dir, hypernet_file)
    assert (model_dir / "vae" / "stale.bin").read_bytes() == b"old"
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["model"] and not hypernet_file.exists()


def test_a_network_made_for_another_model_is_refused_naming_that_model(tmp_path):
    folder, _, tensors = retrained_run(tmp_path)
    model_dir, hypernet_file = package(tmp_path)
    foreign = tmp_path / "sd15.safetensors"
    save_file(tensors, foreign, metadata={"format": "lowdim.hypernet", "model": "sd15"})
    with pytest.raises(LowdimError, match="made for model 'sd15'"):
        ship(folder, foreign, model_dir, hypernet_file)
    assert (model_dir / "vae" / "stale.bin").read_bytes() == b"old"


def test_the_old_networks_split_does_not_outlive_it(tmp_path):
    folder, hypernet, _ = retrained_run(tmp_path)
    model_dir, hypernet_file = package(tmp_path)
    hypernet_file.parent.mkdir(parents=True)
    (hypernet_file.parent / "split.json").write_text('{"train": "old"}')
    (hypernet.parent / "split.json").unlink()
    ship(folder, hypernet, model_dir, hypernet_file)
    assert hypernet_file.exists() and not (hypernet_file.parent / "split.json").exists()


def test_no_shipped_config_names_the_training_machines_path(tmp_path):
    folder, hypernet, _ = retrained_run(tmp_path)
    (folder / "vae").mkdir()
    (folder / "vae" / "config.json").write_text('{"_name_or_path": "/home/trainer/run/vae", "latent_channels": 4}')
    model_dir, hypernet_file = package(tmp_path)
    ship(folder, hypernet, model_dir, hypernet_file)
    assert json.loads((model_dir / "vae" / "config.json").read_text()) == {"latent_channels": 4}


def test_the_shipped_network_names_the_folders_it_was_made_from_without_the_training_machines_paths(tmp_path):
    folder, _, tensors = retrained_run(tmp_path)
    hypernet = tmp_path / "run" / "hyper" / "hypernet.safetensors"
    extra = {"weights": "/home/trainer/r15/weights, runs/more", "key_pairs": "runs/r15/people", "steps": 0}
    save_file(tensors, hypernet, metadata={
        "format": "lowdim.hypernet", "model": "tinyfaces-retrained", "extra": json.dumps(extra),
        "encoder_config": json.dumps({"_name_or_path": "/root/.cache/encoders/dinov2", "hidden_size": 384})})
    model_dir, hypernet_file = package(tmp_path)
    ship(folder, hypernet, model_dir, hypernet_file)
    with safe_open(str(hypernet_file), "pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["extra"]) == {"weights": "weights, more", "key_pairs": "people", "steps": 0}
    assert json.loads(metadata["encoder_config"]) == {"hidden_size": 384}


def test_the_packaged_network_carries_none_of_its_makers_paths_and_says_how_it_finetunes():
    from lowdim_tinyfaces.model_files import hypernet_path

    with safe_open(str(hypernet_path()), "pt") as handle:
        metadata = handle.metadata()
    extra = json.loads(metadata["extra"])
    assert "/" not in extra["weights"] + extra["key_pairs"] and "_name_or_path" not in metadata["encoder_config"]
    # personalize finetunes with the precompute's phrase and checks the frozen bases it learned with
    assert (extra["prompt"], extra["token"]) == ("a [V] face", "sks") and extra["bases_checksum"]
