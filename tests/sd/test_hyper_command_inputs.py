"""What the hypernetwork commands refuse before any work: convert-encoder's -o, train-hypernet's --features that
lack the run's images, and the README's encoder-features line as written."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from safetensors import safe_open

from lowdim.errors import LowdimError
from lowdim.hyper import HyperConfig, build_hypernet, dinov2_onnx
from lowdim_cli.main import main
from lowdim_sd.feature_file import StoredFeatures, compute_features, save_features
from lowdim_sd.hypertrain import HyperTrainJob, train_hypernet
from lowdim_sd.hypertrain_io import FeatureCache
from lowdim_sd.weight_dataset import WeightDataset

TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32}
FROZEN = {"encoder_config": TINY_VIT, "width": 16, "attention_heads": 2, "iterations": 2, "freeze_encoder": True,
          "encoder_pool": 2}
README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.usefixtures("one_thread")


def one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------- convert-encoder -o (F4)


@pytest.fixture
def conversions(monkeypatch):
    """The ONNX reading stubbed (the real one takes a minute on the packaged file): each call returns a tiny
    state dict whose value counts the calls, so a test can tell which conversion a folder holds."""
    calls = []

    def read(path):
        calls.append(path)
        return {"w": torch.full((2,), float(len(calls)))}, dinov2_onnx.dinov2_config(hidden=64, layers=1, grid=2)

    monkeypatch.setattr(dinov2_onnx, "read_dinov2_weights", read)
    return calls


def convert_cli(out: Path, *flags: str, source: str = "m.onnx") -> int:
    return main(["convert-encoder", source, "-o", str(out), *flags])


def stored_value(folder: Path) -> float:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        return float(handle.get_tensor("w")[0])


def test_convert_encoder_writes_a_new_or_empty_folder(tmp_path, conversions):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty"):
        assert convert_cli(out) == 0
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_convert_encoder_replaces_an_earlier_conversion_only_with_overwrite(tmp_path, conversions, capsys):
    out = tmp_path / "dinov2"
    assert convert_cli(out) == 0
    capsys.readouterr()
    assert convert_cli(out) == 1
    error = one_line(capsys.readouterr().err)
    assert f"{out}: already holds a converted encoder" in error and "pass --overwrite" in error
    assert len(conversions) == 1 and stored_value(out) == 1.0  # refused before the ONNX file is read
    assert convert_cli(out, "--overwrite", source="other.onnx") == 0
    assert stored_value(out) == 2.0
    assert json.loads((out / "config.json").read_text())["model_type"] == "dinov2"


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_convert_encoder_never_writes_into_a_folder_of_other_files(tmp_path, conversions, capsys, overwrite):
    out = tmp_path / "me"  # a personalize folder that happens to hold a config.json
    out.mkdir()
    (out / "adapter.safetensors").write_bytes(b"adapter")
    (out / "config.json").write_text('{"seed": 1}')
    assert convert_cli(out, *overwrite) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "not an earlier conversion" in error and "adapter.safetensors" in error
    assert sorted(p.name for p in out.iterdir()) == ["adapter.safetensors", "config.json"]
    assert (out / "config.json").read_text() == '{"seed": 1}' and not conversions


def test_overwrite_keeps_a_conversion_folder_that_gained_other_files(tmp_path, conversions, capsys):
    out = tmp_path / "dinov2"
    assert convert_cli(out) == 0
    (out / "notes.txt").write_text("mine")
    assert convert_cli(out, "--overwrite") == 1
    assert "notes.txt" in capsys.readouterr().err
    assert stored_value(out) == 1.0 and (out / "notes.txt").read_text() == "mine"


def test_the_encoder_cache_is_converted_again_in_place(tmp_path, conversions):
    folder = tmp_path / "cache"
    dinov2_onnx.convert("a.onnx", folder)
    (folder / "source.json").write_text('{"source": "a.onnx", "sha256": "0"}')  # the cache's stamp beside it
    assert dinov2_onnx.convert("b.onnx", folder, overwrite=True) == folder and stored_value(folder) == 2.0


# ------------------------------------------------------------ train-hypernet --features of other images (F5)


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("inputsdata"), "w", 4, seed=5)


def network(weights):
    data = WeightDataset(weights)
    torch.manual_seed(0)  # as train-hypernet seeds its network: the same encoder
    return build_hypernet(HyperConfig.from_dict(FROZEN), data.space, data.layers), data


def features_of(weights, path: Path, images) -> Path:
    net, _ = network(weights)
    keys, features = compute_features(net.encoder, images)
    return save_features(path, net.encoder, keys, features)


def job(weights, out, **kwargs) -> HyperTrainJob:
    options = {"hyper": FROZEN, "steps": 2, "batch_size": 2, "val_identities": 1, "log_every": 1,
               "checkpoint_every": 0, "diffusion_iterates": "last", **kwargs}
    return HyperTrainJob(weights=weights, out=out, **options)


@pytest.fixture
def nothing_loads(monkeypatch):
    monkeypatch.setattr("lowdim.hyper.build_hypernet", lambda *a, **k: pytest.fail("the network was built"))
    monkeypatch.setattr("lowdim_sd.loading.load_sd", lambda *a, **k: pytest.fail("the SD model was loaded"))


def test_features_of_other_images_are_refused_by_name_before_anything_loads(weights, tmp_path, nothing_loads):
    others = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1
    path = features_of(weights, tmp_path / "f.safetensors", others)
    first = weights.parent / "faces-w" / "person_000.png"
    with pytest.raises(LowdimError) as error:
        train_hypernet(job(weights, tmp_path / "h", features=path), progress=False)
    message = str(error.value)
    assert f"{path}: no features for {first}" in message and "4 of the 4 images" in message
    assert "lowdim encoder-features" in message and "--resolution 16" in message
    assert not (tmp_path / "h").exists()  # no split.json, no empty folder


def test_the_one_image_missing_is_named(weights, tmp_path, nothing_loads):
    data = WeightDataset(weights)
    path = features_of(weights, tmp_path / "f.safetensors", [data.image(item) for item in (0, 1, 3)])
    with pytest.raises(LowdimError, match=r"no features for \S*person_002.png \(1 of the 4 images"):
        train_hypernet(job(weights, tmp_path / "h", features=path), progress=False)


def test_extra_images_need_features_too(weights, tmp_path, nothing_loads):
    data = WeightDataset(weights)
    path = features_of(weights, tmp_path / "f.safetensors", [data.image(item) for item in range(len(data))])
    extra = tmp_path / "extra"
    save_images(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1, extra, "other")
    with pytest.raises(LowdimError, match=r"no features for \S*other_000.png \(2 of the 6 images"):
        train_hypernet(job(weights, tmp_path / "h", features=path, extra_images=[extra]), progress=False)


def test_cli_refuses_features_of_other_images_in_one_line(weights, tmp_path, capsys):
    path = features_of(weights, tmp_path / "f.safetensors", torch.rand(2, 3, 16, 16) * 2 - 1)
    code = main(["train-hypernet", "-w", str(weights), "--encoder-config", json.dumps(TINY_VIT), "--width", "16",
                 "--heads", "2", "--iterations", "2", "--freeze-encoder", "--set", "encoder_pool=2", "--features",
                 str(path), "-o", str(tmp_path / "h"), "--steps", "2"])
    error = capsys.readouterr().err
    assert code == 1 and error.count("\n") == 1
    assert "person_000.png" in error and "image 0 of a batch" not in error
    assert not (tmp_path / "h").exists()


def test_a_feature_missing_during_training_names_its_image(weights, tmp_path):
    net, data = network(weights)
    path = features_of(weights, tmp_path / "f.safetensors", [data.image(0)])
    cache = FeatureCache(StoredFeatures(path, net.encoder), name_of=lambda item: str(data.image_path(item)))
    images = torch.stack([data.image(0), data.image(1)])
    with pytest.raises(LowdimError, match=r"no features for \S*person_001.png"):
        cache.get(net.encoder, images, torch.tensor([0, 1]))


# ---------------------------------------------------------------- README's encoder-features line (F10)


def test_readme_encoder_features_line_works_on_tinyfaces_identities(tmp_path, capsys):
    """The README's line as written, on 32 px identities (TinyFaces', the README's model), with a tiny ViT in
    place of the default DINOv2 (whose conversion takes a minute)."""
    from transformers import ViTConfig, ViTModel

    line = next(line for line in README.read_text().splitlines() if "`lowdim encoder-features" in line)
    words = shlex.split(line.split("`")[1])[1:]
    words = [str(tmp_path / "ids") if word == "identities/" else word for word in words]
    words = [str(tmp_path / "f.safetensors") if word == "features.safetensors" else word for word in words]
    save_images(torch.rand(2, 3, 32, 32) * 2 - 1, tmp_path / "ids", "id")
    vit = tmp_path / "vit"
    ViTModel(ViTConfig(**{k: v for k, v in TINY_VIT.items() if k != "model_type"})).save_pretrained(vit)
    assert main([*words, "--encoder", str(vit), "--pool", "2"]) == 0, capsys.readouterr().err
    assert (tmp_path / "f.safetensors").is_file()
