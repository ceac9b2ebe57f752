"""What one ``personalize`` does once: the frozen DINOv2 run on the photo (the describer and the hypernetwork both read
it), the photo's decode and face detection (the check before the model loads hands them to the crop), and the module
walk of an adapter save; with the adapter's bytes those of the paths they replace. Its recipe records the thread
count, which the bytes depend on."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from encoder_runs import backbone_runs  # tests/sd, on the path as pytest puts it
from images_for_tests import decodes_of  # tests/sd, on the path as pytest puts it
from PIL import Image
from safetensors import safe_open
from torch import nn

import lowdim
import lowdim.hyper.encoder as encoder_module
import lowdim_sd.faces as faces
import lowdim_sd.personalize as personalize_module
from lowdim.hyper.encoder import DINOV2, ImageEncoder
from lowdim_sd.personalize import PersonalizeJob, personalize

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE_FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


def read_tokens(monkeypatch) -> list[tuple[int, torch.Tensor]]:
    """(input size, tokens) of every ``ImageEncoder.features`` call from here on: what each reader was given."""
    seen: list[tuple[int, torch.Tensor]] = []
    features = ImageEncoder.features

    def recorded(self, pixel_values):
        tokens = features(self, pixel_values)
        seen.append((self.input_size, tokens.detach().clone()))
        return tokens

    monkeypatch.setattr(ImageEncoder, "features", recorded)
    return seen


# ------------------------------------------------------------------------------ the encoder run once


def frozen_dinov2(**settings) -> ImageEncoder:
    return ImageEncoder(DINOV2, None, 1, frozen=True, **settings).eval()


@pytest.fixture(scope="module")
def photo_batch() -> torch.Tensor:
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_two_encoders_of_one_frozen_backbone_run_it_once_and_give_its_own_tokens(monkeypatch, photo_batch):
    first, second = frozen_dinov2(pool=2), frozen_dinov2(pool=0)  # pooling is each reader's own, after the tokens
    alone = second.features(photo_batch)
    runs = backbone_runs(monkeypatch)
    with encoder_module.features_computed_once():
        mine = first.features(photo_batch)
        assert torch.equal(mine, alone)
        mine.add_(1.0)  # a reader changing its tokens in place changes no one else's
        theirs = second.features(photo_batch)
    assert len(runs) == 1
    assert torch.equal(theirs, alone)  # bit for bit what its own run gives


@pytest.mark.parametrize("other", [
    lambda: frozen_dinov2(input_size=112),  # another input size: other tokens
    lambda: frozen_dinov2(normalize="none"),  # other pixels in
    lambda: ImageEncoder(DINOV2, None, 1, frozen=False).eval(),  # a trainable backbone: its weights may move
], ids=["input_size", "normalize", "not_frozen"])
def test_encoders_that_read_the_photo_otherwise_each_run_their_own(monkeypatch, photo_batch, other):
    shared, different = frozen_dinov2(), other()
    expected = different.features(photo_batch)
    runs = backbone_runs(monkeypatch)
    with encoder_module.features_computed_once():
        shared.features(photo_batch)
        got = different.features(photo_batch)
    assert len(runs) == 2 and torch.equal(got, expected)


def test_another_picture_or_no_scope_runs_the_backbone_again(monkeypatch, photo_batch):
    encoder = frozen_dinov2()
    runs = backbone_runs(monkeypatch)
    with encoder_module.features_computed_once():
        encoder.features(photo_batch)
        encoder.features(-photo_batch)
    encoder.features(photo_batch)
    encoder.features(photo_batch)
    assert len(runs) == 4


# ------------------------------------------------------------------------- personalize on TinyFaces


def tinyfaces_ready() -> bool:
    try:
        from lowdim_tinyfaces.model_files import describer_path, hypernet_path
    except ImportError:
        return False
    return describer_path().exists() and hypernet_path().exists()


needs_tinyfaces = pytest.mark.skipif(not tinyfaces_ready(), reason="the TinyFaces plugin and its shipped files")


@pytest.fixture
def tinyfaces_run(tmp_path):
    """A loaded TinyFaces and a personalize of the example face on it (a few finetune steps, no preview)."""
    from lowdim_sd.loading import load_sd

    photo = tmp_path / "face.png"
    shutil.copy(EXAMPLE_FACE, photo)
    model = load_sd("tinyfaces", device="cpu", dtype="fp32")

    def run(out: str):
        job = PersonalizeJob(model="tinyfaces", image=photo, out=tmp_path / out, steps=2, preview=False)
        return personalize(job, progress=False, model=model)
    return run


@needs_tinyfaces
def test_personalize_runs_dinov2_once_for_the_describer_and_hypernetwork_and_writes_the_same_adapter(
        monkeypatch, tinyfaces_run):
    runs, seen = backbone_runs(monkeypatch), read_tokens(monkeypatch)
    once = tinyfaces_run("once")
    assert len(runs) == 1, "the describer's and the hypernetwork's DINOv2 each ran on the photo"
    assert len(seen) == 2 and torch.equal(seen[0][1], seen[1][1])
    assert once.looks.startswith(" with ")
    # The path it replaces: each encoder runs the backbone itself.
    monkeypatch.setattr(personalize_module, "features_computed_once", contextlib.nullcontext)
    twice = tinyfaces_run("twice")
    assert len(runs) == 3
    assert seen[2][1].equal(seen[0][1]) and seen[3][1].equal(seen[1][1])  # each reader's tokens as they were
    assert once.looks == twice.looks
    assert once.adapter.read_bytes() == twice.adapter.read_bytes()


@needs_tinyfaces
def test_a_describer_of_another_input_size_runs_its_own_encoder(monkeypatch, tinyfaces_run):
    from lowdim_tinyfaces import looks
    from lowdim_tinyfaces.model_files import describer_path

    from lowdim.hyper.describer import describe_images, encoder_for, load_describer
    from lowdim_sd.images import load_image

    describer, metadata = load_describer(describer_path())
    smaller = encoder_for({**metadata, "input_size": "112"})  # the same backbone, read at another size
    monkeypatch.setattr(looks, "_loaded", lambda path: (describer, smaller))
    runs, seen = backbone_runs(monkeypatch), read_tokens(monkeypatch)
    result = tinyfaces_run("other")
    assert len(runs) == 2
    assert [size for size, _ in seen] == [112, 224]
    assert torch.equal(seen[0][1], runs[0]) and torch.equal(seen[1][1], runs[1])
    reference = load_image(EXAMPLE_FACE, 32)
    assert result.looks == looks.words_for(describe_images(describer, smaller, reference[None])[0])


# ----------------------------------------------------------------------------- the photo decoded once


needs_faces = pytest.mark.skipif(not faces.faces_available(), reason="the faces extra (dlib-bin) is not installed")


@pytest.fixture(scope="module")
def astronaut_file(tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def detections(monkeypatch) -> list[tuple[int, int]]:
    """The size of every picture the face detection (with its cache key) ran on from here on."""
    sizes: list[tuple[int, int]] = []
    detect = faces._detect

    def counted(rgb, name):
        sizes.append(rgb.size)
        return detect(rgb, name)

    monkeypatch.setattr(faces, "_detect", counted)
    return sizes


@needs_faces
def test_with_the_crop_on_the_photo_is_decoded_and_detected_once_and_the_adapter_is_unchanged(
        tiny_sd, tmp_path, astronaut_file, monkeypatch):
    references = []
    crop = personalize_module.load_face_image

    def kept(*args, **kwargs):
        references.append(crop(*args, **kwargs))
        return references[-1]

    monkeypatch.setattr(personalize_module, "load_face_image", kept)
    opened, detected = decodes_of(astronaut_file, monkeypatch), detections(monkeypatch)
    job = PersonalizeJob(model=str(tiny_sd), image=astronaut_file, out=tmp_path / "once", steps=1, preview=False,
                         crop=True)
    once = personalize(job, progress=False)
    assert len(opened) == 1, f"the photo was decoded {len(opened)} times"
    assert len(detected) == 1
    # The path it replaces: the crop opens the file and detects on it again (from the cache).
    monkeypatch.setattr(personalize_module, "load_face_image",
                        lambda *args, found=None, **kwargs: kept(*args, **kwargs))
    again = personalize(replace(job, out=tmp_path / "again"), progress=False)
    assert len(opened) == 3 and len(detected) == 3
    assert torch.equal(references[0], references[1])
    assert once.adapter.read_bytes() == again.adapter.read_bytes()


# ---------------------------------------------------------------------------- one module walk a save


def scaled_adapter(layers: int) -> lowdim.Adapters:
    torch.manual_seed(0)
    net = nn.Sequential(*(nn.Linear(4, 4) for _ in range(layers)))
    view = lowdim.Adapters(net)
    view.add("me", lowdim.get_space("lidb", a=2, b=2, rank=1), [str(i) for i in range(layers)], seed=3)
    with torch.no_grad():
        for param in view.parameters("me"):
            param.copy_(torch.randn_like(param))
    for i in range(layers):
        view.set_scale("me", 0.25 + i / 8, layers=str(i))
    return view


def test_save_adapter_looks_up_the_slots_once_whatever_the_layer_count(tmp_path, monkeypatch):
    calls = []
    slots = lowdim.Adapters.slots

    def counted(self, name=None):
        calls.append(name)
        return slots(self, name)

    for layers in (2, 12):
        view = scaled_adapter(layers)
        monkeypatch.setattr(lowdim.Adapters, "slots", counted)
        calls.clear()
        path = lowdim.save_adapter(tmp_path / f"{layers}.safetensors", view, "me")
        assert len(calls) == 1, f"{len(calls)} module walks for {layers} layers"
        monkeypatch.setattr(lowdim.Adapters, "slots", slots)
        kept = {layer: slot.scale for layer, slot in view.slots("me").items()}
        assert lowdim.read_adapter(path).scales == kept  # each layer's own scale, in its place
        loaded = lowdim.read_adapter(path)
        for layer, params in view.tensors("me").items():
            for name, value in params.items():
                assert torch.equal(loaded.params[layer][name], value)


# --------------------------------------------------------------------------- the thread count recorded


def test_personalize_records_the_thread_count_and_show_prints_it(tiny_sd, tmp_path, capsys):
    from lowdim_cli.main import main

    result = personalize(PersonalizeJob(model=str(tiny_sd), image=EXAMPLE_FACE, out=tmp_path / "o", steps=1,
                                        preview=False, crop=False), progress=False)
    with safe_open(str(result.adapter), "pt") as handle:
        recipe = json.loads(handle.metadata()["extra"])
    assert recipe["threads"] == torch.get_num_threads() == 1  # one_thread
    assert main(["show", "--json", str(result.adapter)]) == 0
    assert json.loads(capsys.readouterr().out)["fields"]["recipe"]["threads"] == 1
