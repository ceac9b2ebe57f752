"""How the TinyFaces eval metrics read a picture that is not 32x32: as personalize reads a reference, the centre
square resized to 32 px, so a face scores the same whatever the shape or size of the file it came in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lowdim_tinyfaces import CARDINALITIES, render_tensor
from lowdim_tinyfaces.metrics.plugin_metrics import IdentityMetric, ImageMetric, to_tensor
from PIL import Image

from lowdim.metrics import Sample
from lowdim_sd.images import load_image

COUNT = 4
PAD = 8  # 32 + 2 * 8 = 48: a 2:3 portrait (or landscape) around the 32x32 face


@pytest.fixture(scope="module")
def faces() -> list[Image.Image]:
    levels = np.random.default_rng(3).integers(0, CARDINALITIES, size=(COUNT, len(CARDINALITIES)))
    pixels = render_tensor(levels, "photo", list(range(COUNT))).add(1).mul(127.5).round().clamp(0, 255)
    return [Image.fromarray(p) for p in pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()]


@pytest.fixture(scope="module")
def identity() -> IdentityMetric:
    return IdentityMetric()


@pytest.fixture(scope="module")
def image_sim() -> ImageMetric:
    return ImageMetric()


def padded(face: Image.Image, portrait: bool) -> Image.Image:
    """The face with bands of its own background (edge rows or columns repeated) on two opposite sides."""
    bands = ((PAD, PAD), (0, 0), (0, 0)) if portrait else ((0, 0), (PAD, PAD), (0, 0))
    return Image.fromarray(np.pad(np.asarray(face), bands, mode="edge"))


def scores(metric, faces: list[Image.Image], seen_as: list[Image.Image]) -> np.ndarray:
    """Each face (generated) against the same face in another file (its reference), and the other way round."""
    forward = metric.score([Sample(f, (s,), "") for f, s in zip(faces, seen_as, strict=True)])
    backward = metric.score([Sample(s, (f,), "") for f, s in zip(faces, seen_as, strict=True)])
    return np.array(forward + backward, dtype=np.float64)


@pytest.mark.parametrize("portrait", [True, False], ids=["32x48 portrait", "48x32 landscape"])
@pytest.mark.parametrize("metric_name", ["identity", "image_sim"])
def test_a_face_padded_to_a_non_square_picture_scores_as_the_square_face(faces, portrait, metric_name, request):
    metric = request.getfixturevalue(metric_name)
    framed = [padded(face, portrait) for face in faces]
    assert framed[0].size == ((32, 48) if portrait else (48, 32))
    square = scores(metric, faces, faces)
    assert square == pytest.approx(1.0, abs=1e-4)
    assert scores(metric, faces, framed) == pytest.approx(square, abs=1e-3)


@pytest.mark.parametrize("metric_name", ["identity", "image_sim"])
def test_a_larger_picture_of_a_face_is_resized_not_cropped_to_its_corner(faces, metric_name, request):
    metric = request.getfixturevalue(metric_name)
    enlarged = [face.resize((64, 64), Image.Resampling.LANCZOS) for face in faces]
    assert scores(metric, faces, enlarged) == pytest.approx(1.0, abs=0.03)


def test_pictures_are_read_as_personalize_reads_a_reference(tmp_path):
    """The centre square, resized with lowdim's own filter: the very tensor ``load_image`` gives the model."""
    rng = np.random.default_rng(0)
    shapes = [(45, 70), (70, 45), (32, 32), (64, 64), (100, 60)]
    pictures = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in shapes]
    for index, picture in enumerate(pictures):
        picture.save(tmp_path / f"{index}.png")
    expected = torch.stack([load_image(tmp_path / f"{index}.png", 32) for index in range(len(pictures))])
    assert torch.equal(to_tensor(pictures), expected)
