"""Tiny SD-architecture pipelines built in-process, saved as real diffusers folders."""

from __future__ import annotations

import dataclasses
import shutil
import warnings

import pytest
import torch
from PIL import Image

from lowdim_sd.bench import methods as bench_methods
from lowdim_sd.tiny import save_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """Path of a tiny random SD pipeline folder (epsilon prediction)."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipe", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_v(tmp_path_factory):
    """The same architecture with a v-prediction scheduler."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tinyv") / "pipe", seed=0, prediction_type="v_prediction")


@pytest.fixture
def faces():
    """Two fixed 16x16 'reference images' in [-1, 1]."""
    generator = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1


@pytest.fixture
def people(tmp_path):
    """Three identities (one or two 16x16 images each) in one sub-folder each, as precompute reads them."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    for number, count in enumerate((2, 1, 1)):
        images = torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(number)) * 2 - 1
        save_images(images, tmp_path / "people" / f"person{number}", "img")
    return tmp_path / "people"


@pytest.fixture(scope="module")
def model(tiny_sd):
    """The tiny pipeline loaded once per test module."""
    from lowdim_sd.loading import load_sd

    return load_sd(str(tiny_sd))


@pytest.fixture(scope="module")
def untrained_adapter(tiny_sd, tmp_path_factory):
    """An untrained LiDB adapter file of the tiny model (its default layers, seed 0, token zwx)."""
    import lowdim
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    view = lowdim.Adapters(load_sd(str(tiny_sd), device="cpu", dtype="fp32").modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    return lowdim.save_adapter(tmp_path_factory.mktemp("adapter") / "me.safetensors", view, "default", token="zwx")


@pytest.fixture(scope="module")
def lidb_and_ti(tiny_sd, tmp_path_factory):
    """A LiDB adapter (word zwx) and a one-vector Textual Inversion embedding (word sks) of the tiny model: the
    two kinds of file -a and export read."""
    import lowdim
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import ADAPTER, resolve_layers
    from lowdim_sd.textual_inversion import ti_trainable

    folder = tmp_path_factory.mktemp("adapters")
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    lidb = lowdim.save_adapter(folder / "lidb.safetensors", view, "default", token="zwx")
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    ti_trainable(model, lowdim.get_space("ti", vectors=1, init_word="face"), token="sks")
    ti = lowdim.save_adapter(folder / "ti.safetensors", lowdim.Adapters(model.modules), ADAPTER, token="sks")
    return lidb, ti


@pytest.fixture(scope="module")
def word_adapters(tiny_sd, tmp_path_factory):
    """Three LiDB adapters of the tiny model (UNet cross-attention v, text q), each with its own values and word:
    zwx, qpv, mkr."""
    import lowdim
    from lowdim_sd.loading import load_sd

    folder = tmp_path_factory.mktemp("adapters")
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    made = []
    for seed, word in enumerate(("zwx", "qpv", "mkr")):
        adapters = lowdim.inject(model.modules, lowdim.get_space("lidb"), ["unet.*attn2.to_v", "text_encoder.*q_proj"],
                                 name=f"s{seed}")
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in adapters.parameters(f"s{seed}"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        made.append(lowdim.save_adapter(folder / f"{word}.safetensors", adapters, name=f"s{seed}", token=word))
        adapters.delete(f"s{seed}")
    return made


@pytest.fixture(scope="module")
def embedding(tiny_sd, tmp_path_factory):
    """A one-step Textual Inversion file of the tiny model, under the word 'vqz'."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    from lowdim_sd.train import TrainConfig
    from lowdim_sd.workflows import TrainJob, run_train

    folder = tmp_path_factory.mktemp("ti")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder, "face")
    job = TrainJob(model=str(tiny_sd), images=face, out=folder / "run", space="ti",
                   space_options={"vectors": 1, "init_word": "face"}, config=TrainConfig(steps=1, token="vqz"))
    return run_train(job, progress=False).outputs[0]


@pytest.fixture
def face(tmp_path):
    """One random 32x32 "face photo" saved as a PNG, twice the tiny model's 16x16 (personalize shrinks it to 16)."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    return save_images(image, tmp_path, "face")[0]


TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32}


@pytest.fixture
def make_hypernet(tiny_sd, tmp_path):
    """``make_hypernet(iterations, **metadata)``: a random hypernetwork file for the tiny model's default
    layer set, with visible predictions (large head init)."""
    import lowdim
    from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet
    from lowdim.sizing import layer_specs
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    def make(iterations: int, **metadata):
        layers = layer_specs(load_sd(str(tiny_sd)).modules, resolve_layers(None))
        config = HyperConfig(encoder_config=TINY_VIT, width=16, attention_heads=2, iterations=iterations,
                             head_init_scale=1.0)
        torch.manual_seed(0)
        net = HyperNetwork(config, lowdim.get_space("lidb"), layers)
        with warnings.catch_warnings():  # no adapter_seed unless given: as personalize must read files that record none
            warnings.filterwarnings("ignore", message=".*has no adapter_seed")
            return save_hypernet(tmp_path / "hyper.safetensors", net,
                                 {"model": str(tiny_sd), "layer_set": "unet+text", **metadata})

    return make


@pytest.fixture(scope="session")
def weight_folders(tiny_sd):
    """``make(folder, name, count, seed, steps=3)``: a `precompute` folder ``folder/name`` of ``count`` random 16x16
    identities (named person_000...), their images in ``folder/faces-name``."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    from lowdim_sd.precompute import PrecomputeJob, precompute
    from lowdim_sd.train import TrainConfig

    def make(folder, name: str, count: int, seed: int, steps: int = 3):
        images = torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        save_images(images, folder / f"faces-{name}", "person")
        precompute(PrecomputeJob(model=str(tiny_sd), identities=folder / f"faces-{name}", out=folder / name,
                                 config=TrainConfig(steps=steps), batch_subjects=4, crop=False), progress=False)
        return folder / name

    return make


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    """A precomputed weight dataset of four identities (one random 16x16 image each), made once per module that asks
    for it: the train-hypernet tests' data (a module needing other data defines its own ``weights``)."""
    return weight_folders(tmp_path_factory.mktemp("hyperdata"), "w", 4, seed=9)


# The bench's test modules: a folder of identities, and the real rows cut to a few steps.
@pytest.fixture
def identities(tmp_path, faces):
    folder = tmp_path / "ids"
    folder.mkdir()
    for index, face in enumerate(faces):
        pixels = ((face.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"id-{index}.png")
    return folder


@pytest.fixture
def quick_methods(monkeypatch):
    """The real rows with a few training steps each, so the tiny model trains them in a blink."""
    table = {name: dataclasses.replace(m, steps=min(m.steps, 3)) for name, m in bench_methods.METHODS.items()}
    monkeypatch.setattr(bench_methods, "METHODS", table)  # the default rows and lookups both read methods.py
    return table


@pytest.fixture
def hypernet_run(tmp_path, make_hypernet):
    """A train-hypernet --out folder as a run leaves it: checkpoints at steps 10 and 20 (each a step folder with
    its hypernet.safetensors and state.json), and the finished network."""
    run = tmp_path / "h"
    made = make_hypernet(1)
    for step in (10, 20):  # 20 after 10 by number: names alone would not order step-1000000 and step-999999
        folder = run / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True)
        shutil.copy(made, folder / "hypernet.safetensors")
        (folder / "state.json").write_text("{}")
    shutil.copy(made, run / "hypernet.safetensors")
    return run


@pytest.fixture(scope="module")
def tiny_faces_adapter(tmp_path_factory):
    """A TinyFaces LiDB adapter with a token, as personalize writes one (its values do not matter)."""
    pytest.importorskip("lowdim_tinyfaces")
    import lowdim
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    model = load_sd("tinyfaces", device="cpu", dtype="fp32")
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None, "tinyfaces"), seed=0)
    return lowdim.save_adapter(tmp_path_factory.mktemp("adapter") / "me.safetensors", view, "default", token="sks",
                               base_model="tinyfaces")
