"""What review CO found untested: generate's --negative and --guidance reach the sampler; personalize's --seed
reaches the preview, the LoRA's init and the finetune's noise; --face-index and --crop-margin reach the crop, and
the finetune trains on that crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import lowdim
import lowdim_sd.face_inputs as face_inputs
import lowdim_sd.faces as faces
import lowdim_sd.personalize as personalize_module
from lowdim_sd.generate import GenerateConfig, attach_adapters, generate
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import ADAPTER, relaxed_trainable
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.personalize_resolve import resolve_run

pytestmark = pytest.mark.usefixtures("one_thread")


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=float)


def job(tiny_sd, image, out, **kwargs) -> PersonalizeJob:
    return PersonalizeJob(model=str(tiny_sd), image=image, out=out, **{"steps": 1, "preview": False, "crop": False,
                                                                        **kwargs})


# ------------------------------------------------------------------------------------------------ generate


def drawn(model, **kwargs) -> np.ndarray:
    config = GenerateConfig(prompts=["a photo of a face"], seeds=[3], steps=2, **kwargs)
    return pixels(generate(model, config)[0].image)


def test_the_negative_prompt_changes_the_picture_as_diffusers_draws_it(model, tiny_sd):
    # With guidance the unconditional half is the negative prompt's: another negative is another picture.
    plain = drawn(model, guidance=7.5)
    steered = drawn(model, guidance=7.5, negative_prompt="a red car")
    assert np.abs(plain - steered).max() > 2
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None)
    own = pipe("a photo of a face", negative_prompt="a red car", generator=torch.Generator().manual_seed(3),
               num_inference_steps=2, guidance_scale=7.5, height=16, width=16).images[0]
    assert np.abs(pixels(own) - steered).max() <= 2  # to rounding


def test_the_guidance_scale_changes_the_picture(model):
    at_nine = drawn(model, guidance=9.0)
    assert np.abs(drawn(model, guidance=3.0) - at_nine).max() > 2
    assert np.abs(drawn(model, guidance=5.0) - at_nine).max() > 2  # a fixed scale would draw one of these twice


# ----------------------------------------------------------------------------------------------- personalize


def test_the_preview_is_drawn_with_the_seed_given(tiny_sd, face, tmp_path):
    result = personalize(job(tiny_sd, face, tmp_path / "o", steps=3, preview=True, preview_steps=2, seed=3,
                             learning_rate=0.3, save_dtype="fp32", preview_draws=("0.5",)), progress=False)
    prompts = [caption.rsplit(" (", 1)[0] for caption, _ in result.gallery[1:]]

    def redrawn(seed: int) -> list[np.ndarray]:  # what `lowdim generate -a FILE:0.5 --seed SEED` draws
        fresh = load_sd(str(tiny_sd))
        attach_adapters(fresh, [(result.adapter, 0.5)])
        config = GenerateConfig(prompts=prompts, seeds=[seed], steps=2, token="sks")
        return [pixels(item.image) for item in generate(fresh, config)]

    cells = [pixels(image) for _, image in result.gallery[1:]]
    three, zero = redrawn(3), redrawn(0)
    assert max(np.abs(c - z).max() for c, z in zip(cells, zero, strict=True)) > 20  # seeds 0 and 3 draw apart
    assert all(np.abs(c - t).max() <= 2 for c, t in zip(cells, three, strict=True))  # the preview is seed 3's


def test_the_finetunes_noise_follows_the_seed(tiny_sd, face, tmp_path):
    # The new LoRA starts at zero output, so the first step's loss is set by the noise and timestep alone.
    first = {name: personalize(job(tiny_sd, face, tmp_path / name, seed=seed), progress=False).losses[0]
             for name, seed in (("a", 0), ("b", 7), ("c", 7))}
    assert first["b"] == first["c"]
    assert abs(first["a"] - first["b"]) > 1e-4


def test_the_loras_init_follows_the_seed(tiny_sd, face, tmp_path):
    """The LoRA's down factor gets no gradient while its up factor is zero: after one step it is its init, which
    is relax_rank's at --seed (as `lowdim train --init` draws it)."""
    personalize_job = job(tiny_sd, face, tmp_path / "a", seed=7, bases_seed=2, save_dtype="fp32")
    adapter = lowdim.read_adapter(personalize(personalize_job, progress=False).adapter)
    assert adapter.space.config.merge_frozen  # the start was folded into the weights, as the paper does
    written = adapter.params
    run = resolve_run(personalize_job)
    model = load_sd(str(tiny_sd))
    adapters = lowdim.Adapters(model.modules)
    adapters.add("initial", run.space, run.layers, seed=2)
    relaxed_trainable(model, "initial", rank=personalize_job.rank, seed=7, metadata={})
    expected = adapters.tensors(ADAPTER)
    assert expected
    for layer, params in expected.items():
        assert torch.equal(written[layer]["c1_down"], params["c1_down"].detach().cpu()), layer


@pytest.fixture
def two_faces(tmp_path, monkeypatch):
    """A photo with two "faces" and a detector stand-in (the real one needs the faces extra): a red one on the left,
    the larger (index 0), and a blue one on the right (index 1). The stand-in picks as the real crop does and
    records the margin it is given."""
    photo = Image.new("RGB", (64, 32), (200, 30, 30))
    photo.paste((30, 30, 200), (32, 0, 64, 32))
    path = tmp_path / "two.png"
    photo.save(path)
    boxes = [faces.Face(0, 0, 30, 30, 1.0), faces.Face(36, 4, 60, 28, 1.0)]
    margins: list[float] = []  # each crop's margin, as asked

    def crop_face(image, size, margin, index, name, **hints):
        margins.append(margin)
        face = faces.choose_face(boxes, index, name)
        return image.crop((face.left, face.top, face.right, face.bottom)).resize((size, size))

    monkeypatch.setattr(faces, "crop_face", crop_face)
    monkeypatch.setattr(faces, "detect_faces", lambda image, name="image": list(boxes))  # the check before the load
    monkeypatch.setattr(face_inputs, "faces_available", lambda: True)
    return path, margins


def test_the_face_index_and_margin_reach_the_crop(tiny_sd, tmp_path, two_faces, monkeypatch):
    photo, margins = two_faces
    seen = []
    monkeypatch.setattr(personalize_module, "predict_initial",
                        lambda model, run, reference: seen.append(reference.clone()))
    personalize(job(tiny_sd, photo, tmp_path / "a", crop=True, face_index=1, crop_margin=0.3), progress=False)
    assert margins == [0.3]
    red, green, blue = (float(channel.mean()) for channel in seen[0])
    assert blue > 0.5 and red < -0.5  # the second face, in [-1, 1]
    personalize(job(tiny_sd, photo, tmp_path / "b", crop=True, face_index=0), progress=False)
    red, green, blue = (float(channel.mean()) for channel in seen[1])
    assert red > 0.5 and blue < -0.5


def test_the_finetune_trains_on_the_cropped_face(tiny_sd, tmp_path, two_faces):
    # The blue face is one colour, so its crop is the same pixels as a blue picture read whole: the same finetune.
    blue = tmp_path / "blue.png"
    Image.new("RGB", (32, 32), (30, 30, 200)).save(blue)
    cropped = personalize(job(tiny_sd, two_faces[0], tmp_path / "a", crop=True, face_index=1), progress=False)
    whole = personalize(job(tiny_sd, blue, tmp_path / "b"), progress=False)
    assert cropped.losses == whole.losses
    trained, expected = (lowdim.read_adapter(result.adapter).params for result in (cropped, whole))
    assert trained.keys() == expected.keys()
    for layer, params in expected.items():
        assert all(torch.equal(trained[layer][name], value) for name, value in params.items()), layer
