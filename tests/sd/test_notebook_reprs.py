"""What a notebook shows when a cell's last line is a result (review AC4): ``Generated`` as its picture and a short
line, ``PersonalizeResult`` as a short line and its preview's cells; neither reads a file nor raises."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from lowdim_sd.generate import Generated
from lowdim_sd.personalize import PersonalizeResult


def _picture(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_generated_shows_its_picture_and_a_short_line():
    item = Generated("a [V] face", 3, _picture())
    assert repr(item) == "Generated(prompt='a [V] face', seed=3, size=32x32)"
    shown = Image.open(io.BytesIO(item._repr_png_()))
    assert shown.format == "PNG" and np.array_equal(np.asarray(shown), np.asarray(item.image))


def test_generated_without_a_picture_still_shows():
    item = Generated("a [V] face", 0, None)
    assert repr(item).startswith("Generated(prompt='a [V] face', seed=0")
    assert item._repr_png_() is None


def _result(**changes) -> PersonalizeResult:
    values = {"adapter": Path("me/adapter.safetensors"), "preview": Path("me/preview.png"),
              "stages": {"load model": 1.5, "finetune": 2.25}, "losses": [0.3, 0.2, 0.1],
              "gallery": [("reference", _picture(1)), ("a [V] face", _picture(2))]}
    return PersonalizeResult(**{**values, **changes})


def test_personalize_result_is_one_short_line():
    text = repr(_result())
    assert text == ("PersonalizeResult(adapter='me/adapter.safetensors', steps=3, seconds=3.8, "
                    "preview='me/preview.png')")


def test_personalize_result_shows_its_preview_cells_with_their_captions():
    html = _result(preview=Path("nowhere/preview.png"))._repr_html_()  # drawn from what it holds: no file read
    assert html.count("<img src=\"data:image/png;base64,") == 2
    assert "reference" in html and "a [V] face" in html and "finetune" in html


def test_personalize_result_without_a_preview_shows_its_line_only():
    result = _result(preview=None, gallery=[])
    assert "preview=None" in repr(result)
    assert "<img" not in result._repr_html_() and "me/adapter.safetensors" in result._repr_html_()


def test_a_broken_result_never_raises_when_shown():
    result = _result(stages={"finetune": "soon"}, gallery=[("x", "not a picture")], losses=None)
    assert repr(result).startswith("PersonalizeResult(")
    assert isinstance(result._repr_html_(), str)
