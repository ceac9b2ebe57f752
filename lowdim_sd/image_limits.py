"""What ``images.open_rgb`` and eval's image reader say of a picture that loads but is unusual: an animated one (read
as its first frame) and one over PIL's warning size, each told once per file, in lowdim's words instead of PIL's; and
the line for a file PIL refuses as too large. Kept apart so images.py stays small; needs no torch."""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image


@functools.lru_cache(maxsize=256)  # the files told of last: a long `lowdim ui` server is told of upload after upload
def _tell(file: tuple[object, ...], line: str) -> None:  # file: its path and identity; personalize opens it twice
    warnings.warn(line, stacklevel=5)  # the line two calls above note_frames or note_size, which asked for the picture


def _warn_once(path: Path, line: str) -> None:
    """``line`` as a warning, once per file and line in this process: a file changed since is told again."""
    try:
        stat = path.stat()
        file: tuple[object, ...] = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except OSError:
        file = (str(path),)
    _tell(file, line)


def note_frames(path: Path, frames: int) -> None:
    """An animated picture is read as its first frame, which may be blank (a fade-in): said, naming the file."""
    if frames > 1:
        _warn_once(path, f"image {path} is animated ({frames} frames); using its first frame")


def note_size(path: Path, width: int, height: int) -> None:
    """A photo over PIL's warning size (``Image.MAX_IMAGE_PIXELS``) loads, slowly: said in lowdim's words, naming
    it, once, instead of PIL's unnamed "decompression bomb DOS attack" warning (``pil_size_warning_off``)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        below = _megapixels_below(limit)
        _warn_once(path, f"image {path} is {width}x{height} pixels ({megapixels(width * height)}), more than PIL "
                         f"reads without a warning ({below}): it loads, slowly; a copy scaled down to {below} or "
                         f"less works the same")


@contextmanager
def pil_size_warning_off() -> Iterator[None]:
    """PIL's warning of a picture over its MAX_IMAGE_PIXELS names no file and calls the photo an attack: off
    inside, where the caller says the size itself (``note_size``, eval's shrink). PIL still refuses twice it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def too_many_pixels(error: Exception) -> str:
    """Why PIL refused a file over twice its MAX_IMAGE_PIXELS, with the file's size and the way forward.

    PIL raises before it hands over the image, so the size is read from its message ('Image size
    (196000000 pixels) exceeds ...'); where that wording has changed the size is left out.
    """
    pixels = bomb_pixels(error)
    limit = _megapixels_below(2 * (Image.MAX_IMAGE_PIXELS or 0))
    size = f"{megapixels(pixels)}, " if pixels else ""
    return f"{size}more pixels than PIL opens safely ({limit}): scale it down to {limit} or less"


def bomb_pixels(error: Exception) -> int | None:
    """The pixel count PIL's DecompressionBombError names; None where its wording has changed."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return int(found.group(1)) if found else None


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} MP"


def _megapixels_below(pixels: int) -> str:
    """A limit in whole MP rounded down: a photo scaled to the number said is within it."""
    return f"{pixels // 1_000_000} MP"
