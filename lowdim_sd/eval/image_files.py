"""Opening one image of an eval folder (generated or reference): upright RGB at a bounded size, or why not.

Every image left out or changed on load is a note that names the file, with the size the file itself
has: JPEGs are decoded at a reduced scale, and PIL refuses the largest files before saying their size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import ExifTags, Image, ImageOps

# Not open_rgb: it decodes the whole file first, which would lose draft()'s reduced-scale JPEG decode of huge
# photos below. Its conversion, its animated-picture note and its words for PIL's size limit are shared.
from lowdim_sd.image_limits import note_frames, pil_size_warning_off, too_many_pixels
from lowdim_sd.image_names import animation_frames
from lowdim_sd.images import as_rgb

MIN_SIDE = 16  # below this no metric model sees anything but a blur
MAX_SIDE = 2048  # larger pictures are shrunk on load: every metric model resizes to 224 px or less
_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that show the stored picture turned on its side


class EvalWarning(UserWarning):
    """Something in an eval folder that the run goes on without."""


class SkippedImageWarning(EvalWarning):
    """An image (generated or reference) that is missing, not an image, or too small: left out."""


class ImageSizeWarning(EvalWarning):
    """A huge image, shrunk on load."""


def open_image(path: Path, label: str) -> Image.Image | None:
    """An upright RGB picture, or None with a SkippedImageWarning saying why it can't be used."""
    image = read_image(path, label)
    if isinstance(image, str):
        warn_skipped(path, label, image)
        return None
    return image


def warn_skipped(path: Path, label: str, reason: str) -> None:
    warnings.warn(SkippedImageWarning(f"skipping {label} {path}: {reason}"), stacklevel=3)


def read_image(path: Path, label: str, max_side: int = MAX_SIDE) -> Image.Image | str:
    """An upright RGB picture at most ``max_side`` px long, or the reason it can't be used."""
    if not path.is_file():
        return "no such file" if not path.exists() else "not a file"
    try:
        with pil_size_warning_off():  # the size is bounded here instead: draft, then the shrink below
            image, (width, height) = _decode(path, max_side)
    except Image.DecompressionBombError as error:
        return too_many_pixels(error)
    except (OSError, SyntaxError, ValueError) as error:
        return f"not a readable image{_cut_short(error)}"
    if min(image.size) < MIN_SIDE:
        return f"{image.width}x{image.height} pixels is too small (each side must be at least {MIN_SIDE})"
    if max(width, height) > max_side:
        warnings.warn(ImageSizeWarning(f"{label} {path} is {width}x{height}; shrunk to at most {max_side} px on "
                                       f"its long side"), stacklevel=3)
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    image.info["source"] = str(path)  # metrics name the file in their warnings
    return image


def _cut_short(error: BaseException) -> str:
    """Data cut short said as Personalize says it of a photo (lowdim_sd.images): PIL's "image file is truncated"
    speaks of its decoder. Any other reason stays the generic line."""
    if "truncated" in str(error).lower():
        return ": its data is cut short (a truncated or partly downloaded file)"
    return ""


def _decode(path: Path, max_side: int) -> tuple[Image.Image, tuple[int, int]]:
    """The upright RGB picture, and the file's own size as shown (before draft() shrinks a JPEG's)."""
    with Image.open(path) as opened:
        width, height = opened.size
        if opened.getexif().get(ExifTags.Base.Orientation) in _QUARTER_TURNS:
            width, height = height, width
        note_frames(path, animation_frames(opened))
        opened.draft("RGB", (max_side, max_side))  # JPEG: decode huge photos at a reduced scale
        return as_rgb(ImageOps.exif_transpose(opened)), (width, height)  # 16-bit, float, transparent too
