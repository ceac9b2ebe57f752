"""Reference images in, pictures out: every common file flavour loads; every bad one fails in one clear line."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_sd.image_augment import augment
from lowdim_sd.images import (
    ImageError,
    collect_images,
    load_image,
    load_references,
    to_pil,
)

SIZE = 32


def _value(byte: float) -> float:
    """An 8-bit channel value as load_image maps it into [-1, 1]."""
    return byte / 127.5 - 1.0


def _error(path: Path, **kwargs: object) -> str:
    with pytest.raises(ImageError) as caught:
        load_image(path, SIZE, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and path.name in message, message
    return message


def _quadrants(size: int = 64) -> Image.Image:
    """An upright picture whose four corners differ, so any rotation or mirror shows."""
    image = Image.new("RGB", (size, size), (255, 0, 0))
    half = size // 2
    image.paste((0, 255, 0), (half, 0, size, half))
    image.paste((0, 0, 255), (0, half, half, size))
    image.paste((255, 255, 0), (half, half, size, size))
    return image


# ------------------------------------------------------------------------------------------ file flavours


def test_rgb_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "face.jpg"
    Image.new("RGB", (64, 48), (200, 100, 50)).save(path, quality=95)
    tensor = load_image(path, SIZE)
    assert tensor.shape == (3, SIZE, SIZE) and tensor.dtype == torch.float32
    expected = torch.tensor([_value(200), _value(100), _value(50)]).view(3, 1, 1)
    assert (tensor - expected).abs().max() < 0.05


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (40, 40), 128).save(path)
    tensor = load_image(path, SIZE)
    assert tensor.shape == (3, SIZE, SIZE)
    assert torch.allclose(tensor, torch.full_like(tensor, _value(128)), atol=1e-6)


def test_16bit_grayscale_png_is_rescaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((40, 40), 30000, dtype=np.uint16)).save(path)
    with Image.open(path) as reopened:
        assert reopened.mode in {"I;16", "I"}  # the flavour under test really reaches load_image
    tensor = load_image(path, SIZE)
    # PIL's own convert("L") would clip 30000 to 255 (white); 30000/65535 of the range is mid-dark gray.
    assert torch.allclose(tensor, torch.full_like(tensor, _value(round(30000 / 65535 * 255))), atol=1e-6)


def test_rgba_transparency_composites_on_white(tmp_path: Path) -> None:
    path = tmp_path / "cutout.png"
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent black: must not come out black
    image.paste((255, 0, 0, 255), (0, 0, 20, 40))
    image.save(path)
    tensor = load_image(path, SIZE)
    assert torch.allclose(tensor[:, :, -1], torch.ones(3, SIZE))  # right column: white
    assert torch.allclose(tensor[:, :, 0], torch.tensor([1.0, -1.0, -1.0]).view(3, 1))  # left column: red


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(path, quality=95)  # full magenta + yellow = red
    red, green, blue = load_image(path, SIZE).mean(dim=(1, 2)).tolist()
    assert red > 0.8 and green < -0.8 and blue < -0.8


def test_palette_png_with_and_without_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    palette.paste(0, (0, 0, 20, 40))
    plain, clear = tmp_path / "plain.png", tmp_path / "clear.png"
    palette.save(plain)
    palette.save(clear, transparency=0)
    assert torch.allclose(load_image(plain, SIZE)[:, :, 0], torch.full((3, SIZE), -1.0))  # black stays black
    assert torch.allclose(load_image(clear, SIZE)[:, :, 0], torch.ones(3, SIZE))  # transparent -> white
    assert torch.allclose(load_image(clear, SIZE)[:, :, -1], torch.tensor([-1.0, -1.0, 1.0]).view(3, 1))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = _quadrants()
    reference = tmp_path / "upright.png"
    upright.save(reference)
    # Orientation 6 says "rotate 90° clockwise to display": store the picture turned the other way.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated, untagged = tmp_path / "phone.jpg", tmp_path / "untagged.jpg"
    stored.save(rotated, quality=95, exif=exif)
    stored.save(untagged, quality=95)
    expected = load_image(reference, SIZE)
    assert (load_image(rotated, SIZE) - expected).abs().mean() < 0.05
    assert (load_image(untagged, SIZE) - expected).abs().mean() > 0.5  # the tag, not luck, made them match


def test_huge_photo_is_center_cropped(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    image = Image.new("RGB", (3000, 2000), (0, 0, 255))
    image.paste((0, 255, 0), (500, 0, 2500, 2000))  # the centered 2000x2000 square is all green
    image.save(path, quality=90)
    tensor = load_image(path, SIZE)
    assert tensor.shape == (3, SIZE, SIZE)
    assert (tensor - torch.tensor([-1.0, 1.0, -1.0]).view(3, 1, 1)).abs().max() < 0.1


def test_small_but_acceptable_image_warns_and_upscales(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (20, 24), (10, 20, 30)).save(path)
    with pytest.warns(UserWarning, match=r"small\.png is 20x24"):
        tensor = load_image(path, SIZE)
    assert tensor.shape == (3, SIZE, SIZE)


# ------------------------------------------------------------------------------------------------ errors


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nobody.jpg")


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a readable image" in _error(path)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\nat all\n")
    assert "not a readable image (corrupt or truncated?)" in _error(path)


def test_tiny_image_names_its_size_and_the_minimum(tmp_path: Path) -> None:
    path = tmp_path / "icon.png"
    Image.new("RGB", (4, 4)).save(path)
    message = _error(path)
    assert "4x4" in message and str(SIZE // 2) in message
    assert "6x6" in _error(_saved(tmp_path / "six.png", 6), min_side=8)


def _saved(path: Path, side: int) -> Path:
    Image.new("RGB", (side, side)).save(path)
    return path


def test_image_error_is_a_lowdim_error() -> None:
    assert issubclass(ImageError, LowdimError)  # so the CLI prints it and exits 1


# ------------------------------------------------------------------------------------------------ folders


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="holds no image files") as caught:
        collect_images(tmp_path)
    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)


def test_folder_skips_non_images_with_one_warning(tmp_path: Path) -> None:
    for name, color in [("b.png", (0, 0, 255)), ("a.JPG", (255, 0, 0))]:
        Image.new("RGB", (40, 40), color).save(tmp_path / name, format="PNG" if name.endswith("png") else "JPEG")
    (tmp_path / "README.txt").write_text("my reference photos")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "nested").mkdir()
    with pytest.warns(UserWarning, match="README.txt") as record:
        batch = load_references(tmp_path, SIZE)
    assert len(record) == 1 and ".DS_Store" not in str(record[0].message)
    assert batch.shape == (2, 3, SIZE, SIZE)
    assert batch[0, 0].mean() > 0.9 and batch[1, 2].mean() > 0.9  # sorted by name: a.JPG, then b.png


def test_listed_files_and_missing_listed_file(tmp_path: Path) -> None:
    first, second = _saved(tmp_path / "one.png", 40), _saved(tmp_path / "two.png", 40)
    assert collect_images([str(second), first]) == [second, first]  # the user's order is kept
    with pytest.raises(ImageError, match="ghost.jpg") as caught:
        collect_images([first, tmp_path / "ghost.jpg"])
    assert "\n" not in str(caught.value)
    with pytest.raises(ImageError):
        collect_images([])


# ------------------------------------------------------------------------------------------------ writing


def test_save_images_round_trip_without_leftovers(tmp_path: Path) -> None:
    batch = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    paths = save_images(batch, tmp_path / "out", prefix="sample")
    assert [p.name for p in paths] == ["sample_000.png", "sample_001.png", "sample_002.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]  # no temp files
    reloaded = torch.stack([load_image(p, 8) for p in paths])
    assert (reloaded - batch).abs().max() <= 1 / 127.5 + 1e-6  # only 8-bit quantization is lost
    assert [image.size for image in to_pil(batch[0])] == [(8, 8)]


# ------------------------------------------------------------------------------------------- augmentation

batches = st.builds(
    lambda n, h, w, seed: torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1,
    st.integers(1, 3), st.integers(2, 12), st.integers(2, 12), st.integers(0, 2**16),
)
fast = settings(max_examples=40, deadline=None)


float_dtypes = st.sampled_from([torch.float32, torch.float64])


@fast
@given(batches, st.integers(0, 2**32), st.booleans(), st.floats(0.0, 0.5), float_dtypes)
def test_augment_is_deterministic_and_keeps_shape_dtype_range(
    images: torch.Tensor, seed: int, flip: bool, max_crop: float, dtype: torch.dtype
) -> None:
    images = images.to(dtype)
    images[0, 0, 0, 0], images[-1, -1, -1, -1] = -1.0, 1.0  # the range's ends are present
    first = augment(images, torch.Generator().manual_seed(seed), flip, max_crop)
    second = augment(images, torch.Generator().manual_seed(seed), flip, max_crop)
    assert torch.equal(first, second)
    assert first.shape == images.shape and first.dtype == dtype
    assert first.min() >= -1.0 and first.max() <= 1.0


@fast
@given(batches, st.integers(0, 2**32))
def test_flip_only_is_an_exact_mirror_or_identity(images: torch.Tensor, seed: int) -> None:
    out = augment(images, torch.Generator().manual_seed(seed), flip=True, max_crop=0.0)
    for before, after in zip(images, out, strict=True):
        assert torch.equal(after, before) or torch.equal(after, before.flip(-1))


def test_augment_flips_and_crops_sometimes_and_never_when_disabled() -> None:
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    flipped = augment(images, torch.Generator().manual_seed(0), flip=True, max_crop=0.0)
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images, strict=True)]
    assert any(mirrored) and not all(mirrored)
    assert torch.equal(augment(images, torch.Generator().manual_seed(0), flip=False, max_crop=0.0), images)
    cropped = augment(images, torch.Generator().manual_seed(0), flip=False, max_crop=0.3)
    assert not torch.equal(cropped, images)


def test_augment_same_generator_state_same_output() -> None:
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    first = augment(images, generator)
    generator.set_state(state)
    assert torch.equal(augment(images, generator), first)


def test_augment_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        augment(torch.zeros(3, 8, 8), torch.Generator())
    with pytest.raises(ValueError):
        augment(torch.zeros(1, 3, 8, 8), torch.Generator(), max_crop=1.0)


def test_no_warning_for_an_exact_size_image(tmp_path: Path) -> None:
    path = _saved(tmp_path / "exact.png", SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(path, SIZE)
