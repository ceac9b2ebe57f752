"""Reference images in, pictures out: loading and saving of image tensors (augmentation: ``image_augment``).

Images travel as float32 tensors of shape (3, H, W) or (N, 3, H, W) with values in [-1, 1], the range
the SD VAE expects. Everything a user can get wrong (a missing file, a corrupt or tiny picture, an empty
folder) raises :class:`ImageError` with one line that names the file, so the CLI can print it as is.
"""

from __future__ import annotations

import contextvars
import os
import shlex
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lowdim.files import FORMAT, atomic_write
from lowdim.foreign_files import safetensors_metadata
from lowdim.scoped import scoped

# The size and frame notes are image_limits' (eval's reader shares them); augment is re-exported: train.py imports it.
from lowdim_sd.image_augment import augment as augment
from lowdim_sd.image_limits import note_frames, note_size, pil_size_warning_off, too_many_pixels

# ImageError, the extensions and the folder scan need no PIL (image_names); many modules import them from here.
from lowdim_sd.image_names import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from lowdim_sd.image_names import ImageError as ImageError
from lowdim_sd.image_names import animation_frames, some_names, unreadable_format, unreadable_photo_line
from lowdim_sd.image_names import collect_images as collect_images

PathLike = str | os.PathLike
# Modes holding more than 8 bits per pixel: PIL's convert() clips them at 255 instead of rescaling.
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_TRANSPARENT_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Errors PIL raises for bytes it cannot decode: UnidentifiedImageError and "image file is truncated"
# are OSErrors; some plugins raise SyntaxError or ValueError on malformed headers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError)


# ---------------------------------------------------------------------------------------------- loading


def load_image(path: PathLike, size: int, min_side: int | None = None,
               picture: Image.Image | None = None) -> torch.Tensor:
    """Load one picture as a (3, size, size) float32 tensor in [-1, 1].

    The picture is turned upright (EXIF orientation), converted to RGB (transparency over white),
    center-cropped to a square and resized with LANCZOS. A shorter side below ``min_side`` (default
    ``size // 2``) is an error, since upscaling that far only invents blur; a shorter side between
    ``min_side`` and ``size`` is upscaled with a warning. ``picture``: the file at ``path`` as ``open_rgb``
    decoded it already (a check before the run read it), read instead of decoding the file again.
    """
    path = Path(path)
    image = _usable_image(path, size, min_side, picture)
    told = _UPSCALED.get()
    if told is not None:
        told.loaded.add(path)
    if min(image.size) < size:
        if told is None:
            warnings.warn(_upscaled_line([(path, image.size)], 1, size), stacklevel=2)
        else:
            told.small[path] = image.size
    return pil_to_tensor(_center_square(image, size))


@dataclass
class _Upscaled:
    size: int
    loaded: set[Path] = field(default_factory=set)  # each picture once, however often it is read (epochs)
    small: dict[Path, tuple[int, int]] = field(default_factory=dict)


_UPSCALED: contextvars.ContextVar[_Upscaled | None] = contextvars.ContextVar("upscaled", default=None)


@contextmanager
def upscaling_told_once(size: int) -> Iterator[None]:
    """Inside, the pictures ``load_image`` upscales are counted, and told in one warning on the way out (done or
    stopped): a precompute over thousands of small photos would otherwise print a line for each."""
    told = _Upscaled(size)
    try:
        with scoped(_UPSCALED, told):
            yield
    finally:
        if told.small:
            warnings.warn(_upscaled_line(list(told.small.items()), len(told.loaded), size), stacklevel=3)


def _usable_image(path: Path, size: int, min_side: int | None, picture: Image.Image | None = None) -> Image.Image:
    """The picture at ``path`` (see ``open_rgb``; ``picture``: as it decoded it already), refused when its shorter
    side is below ``min_side``."""
    min_side = size // 2 if min_side is None else min_side
    image = open_rgb(path) if picture is None else picture
    width, height = image.size
    if min(width, height) < min_side:
        raise ImageError(
            f"image {path} is too small: {width}x{height} pixels, its shorter side must be at least {min_side}"
        )
    return image


def open_rgb(path: PathLike) -> Image.Image:
    """The picture at ``path`` as an upright (EXIF orientation) RGB PIL image, transparency over white.

    The whole file is decoded now (PIL is lazy), so corrupt or truncated data fails here: a missing, empty,
    unreadable or absurdly large file is an :class:`ImageError` naming it. An animated picture is read as its
    first frame, and one over PIL's warning size loads: each is said once per file (``note_frames``,
    ``note_size``), however often it is opened.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file {path} not found")
    if not path.is_file():
        raise ImageError(f"image path {path} is not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"image file {path} is empty (0 bytes)")
    try:
        with pil_size_warning_off(), Image.open(path) as opened:
            frames = animation_frames(opened)  # before load(): counting seeks through the frames
            opened.load()
            image = as_rgb(ImageOps.exif_transpose(opened))
    except Image.DecompressionBombError as error:  # PIL's guard against absurd sizes: say so, not "corrupt"
        raise ImageError(f"image {path} is {too_many_pixels(error)}") from error
    except UnidentifiedImageError as error:
        raise ImageError(_what_it_is(path) or f"file {path} is not a readable image (corrupt or truncated?)") \
            from error
    except _DECODE_ERRORS as error:  # a safetensors header can pass for a BMP's: PIL then fails to decode it
        raise ImageError(_what_it_is(path) or f"file {path} is not a readable image{_why_undecodable(error)}") \
            from error
    note_frames(path, frames)
    note_size(path, *image.size)
    return image


def _what_it_is(path: Path) -> str | None:
    """The line for a file PIL cannot read that is something else: a safetensors file, a HEIC or AVIF photo."""
    kind = unreadable_format(path)
    return _not_a_photo(path) or (unreadable_photo_line(str(path), kind) if kind else None)


def _not_a_photo(path: Path) -> str | None:
    """What a safetensors file handed where a photo goes is (an adapter from personalize, most likely), told from
    its header alone (``safetensors_metadata``), no tensor read; None for anything else, whose decoder's failure
    is then the line."""
    metadata = safetensors_metadata(path)
    if metadata is None:
        return None
    kind = metadata.get("format")
    if kind == FORMAT:  # the model and prompt it was made with, as `lowdim show` gives them: the line runs as printed
        from lowdim_sd.adapter_info import configs_flag_for, use_prompt
        from lowdim_sd.file_info_parts import command_word, json_object

        base = metadata.get("base_model") or ""
        model = command_word(base, "MODEL") + configs_flag_for(base)
        prompt = use_prompt(metadata, json_object(metadata.get("extra")))
        draw = f"lowdim generate -m {model} -a {shlex.quote(str(path))} -p {prompt}"
        return f"{path} is a lowdim adapter, not a photo; draw with it: {draw}"
    return f"{path} is a .safetensors file{f' ({kind})' if kind else ''}, not a photo"


def _why_undecodable(error: BaseException) -> str:
    """The end of open_rgb's line: data cut short said plainly (PIL's "image file is truncated (8 bytes not
    processed)" and "Truncated File Read" speak of its decoder), any other reason kept short."""
    if "truncated" in str(error).lower():
        return ": its data is cut short (a truncated or partly downloaded file)"
    return f" (corrupt or truncated?): {_one_line(error)}"


def as_rgb(image: Image.Image) -> Image.Image:
    """A picture of any mode as 8-bit RGB, as every loader here reads it: transparency over white, 16-bit and
    float grayscale rescaled by their range."""
    if image.mode in _WIDE_MODES:
        return _wideas_rgb(image)
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        # Composite over white: a transparent background would otherwise decode as black (or garbage).
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def _wideas_rgb(image: Image.Image) -> Image.Image:
    """Rescale 16/32-bit grayscale to 8 bits by its value range, instead of PIL's clipping at 255."""
    values = np.asarray(image, dtype=np.float64)
    peak = float(values.max(initial=0.0))
    if image.mode.startswith("I;16"):
        scale = 65535.0
    elif image.mode == "F":  # float pictures are usually in [0, 1]; otherwise treat them like integers
        scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0 if peak <= 65535.0 else peak
    else:  # mode I: 8-bit data, 16-bit PNG data (older PIL) or arbitrary int32
        scale = 255.0 if peak <= 255.0 else 65535.0 if peak <= 65535.0 else peak
    gray = np.clip(np.round(values / scale * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _center_square(image: Image.Image, size: int) -> Image.Image:
    """Crop the largest centered square, then resize it.

    Cropping first (rather than resize's ``box``) keeps the filter from reaching into the cut-off sides,
    which would tint the border columns with what was cropped away.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    if side == size:
        return square
    # reducing_gap shrinks huge photos by fast integer steps first: much faster, visually the same.
    return square.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)


def picture_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """An open picture as ``load_image`` reads a file (without its EXIF turn and size checks): RGB, its centre
    square resized to ``size``, in [-1, 1]. What a metric scoring a picture against a reference should read."""
    return pil_to_tensor(_center_square(as_rgb(image), size))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (3, H, W) float32 tensor in [-1, 1], the range the SD VAE expects."""
    array = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32)
    return (tensor / 127.5 - 1.0).contiguous()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def load_references(paths: PathLike | Sequence[PathLike], size: int, min_side: int | None = None) -> torch.Tensor:
    """All reference pictures named by ``paths`` (see collect_images) as an (N, 3, size, size) tensor."""
    return load_reference_sets([paths], size, min_side)[0]


def load_reference_sets(sets: Sequence[PathLike | Sequence[PathLike]], size: int,
                        min_side: int | None = None) -> list[torch.Tensor]:
    """Each set's pictures (see collect_images) as an (N, 3, size, size) tensor, reading every file first: all
    the unusable ones of every set are named in one ImageError, so one run finds them all, and the pictures
    upscaled (see load_image) in one warning, not a line each."""
    loaded: list[list[torch.Tensor]] = []
    problems: list[str] = []
    with upscaling_told_once(size):
        for paths in sets:
            loaded.append([])
            try:
                files = collect_images(paths)
            except ImageError as error:
                problems.append(str(error))
                continue
            for path in files:
                try:
                    loaded[-1].append(load_image(path, size, min_side))
                except ImageError as error:
                    problems.append(str(error))
    if len(problems) == 1:
        raise ImageError(problems[0])
    if problems:
        raise ImageError(f"{len(problems)} reference images cannot be used (fix or remove each): "
                         + "; ".join(problems))
    return [torch.stack(tensors) for tensors in loaded]


def _upscaled_line(small: list[tuple[Path, tuple[int, int]]], total: int, size: int) -> str:
    """The one warning for the pictures (path, (width, height)) below ``size``, which are upscaled (a blur)."""
    if len(small) == 1:
        (path, (width, height)), = small
        return f"image {path} is {width}x{height} pixels; upscaling it to {size}x{size}"
    path, (width, height) = min(small, key=lambda item: (min(item[1]), item[1]))
    return (f"{len(small)} of {total} images are smaller than {size}x{size} pixels and are upscaled, "
            f"which blurs them (the smallest, {path}, is {width}x{height}): "
            f"{some_names([str(p) for p, _ in small], shown=3)}")


# ---------------------------------------------------------------------------------------------- writing


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(N, 3, H, W) or (3, H, W) tensors in [-1, 1] to RGB pictures (values outside are clipped)."""
    batch = images.unsqueeze(0) if images.dim() == 3 else images
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"to_pil expects (N, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
    pixels = ((batch.detach().to("cpu", torch.float32).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(p.permute(1, 2, 0).numpy(), mode="RGB") for p in pixels]


def save_png(image: Image.Image, path: PathLike) -> Path:
    """Write a PNG through a temp file in the same folder and an atomic rename: never a half-written file."""
    return atomic_write(Path(path), lambda temp: image.save(temp, format="PNG"))

