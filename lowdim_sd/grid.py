"""Labelled picture grids: the prompt under each picture, optional row labels at the left.

Used for sample sheets (one row of pictures, a prompt under each) and galleries (rows = identities,
columns = the reference picture, then methods x prompts). Only PIL is needed: the font is PIL's
built-in default, so a grid renders the same on any machine without font files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lowdim_sd.images import PathLike, save_png

MIN_CELL = 128  # smaller pictures are upscaled to at least this, so a caption line holds a few words
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of a grid: cells of ``cell`` px, ``pad`` px gaps, a caption band under each row."""

    ncol: int
    nrow: int
    cell: int
    pad: int
    band: int  # height of the caption band under every row (0 without captions)
    label_width: int  # width of the row-label column at the left (0 without row labels)

    @property
    def width(self) -> int:
        return self.label_width + self.ncol * self.cell + (self.ncol + 1) * self.pad

    @property
    def height(self) -> int:
        return self.nrow * (self.cell + self.band) + (self.nrow + 1) * self.pad

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left corner of picture ``index`` (row-major); its caption band starts ``cell`` px below."""
        row, col = divmod(index, self.ncol)
        return (self.label_width + self.pad + col * (self.cell + self.pad),
                self.pad + row * (self.cell + self.band + self.pad))


def make_grid(
    images: Sequence[Image.Image],
    captions: Sequence[str] | None = None,
    ncol: int | None = None,
    cell: int | None = None,
    row_labels: Sequence[str] | None = None,
    font_size: int | None = None,
    max_lines: int = 8,
) -> Image.Image:
    """Lay ``images`` out row-major in ``ncol`` columns (default: one row), each fitted into a square cell.

    ``cell`` defaults to the largest picture side, but at least MIN_CELL: small pictures are upscaled by
    a whole factor with NEAREST so their pixels stay crisp (32 px -> 128 px). Each caption is wrapped to
    the cell width in the band under its picture (at most ``max_lines`` lines, then "..."); row labels,
    one per row, are wrapped into a column at the left.
    """
    layout, font, caption_lines, label_lines = _plan(images, captions, ncol, cell, row_labels, font_size, max_lines)
    grid = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    line_height = _line_height(font)
    for index, image in enumerate(images):
        x, y = layout.origin(index)
        fitted = _fit(image, layout.cell)
        grid.paste(fitted, (x + (layout.cell - fitted.width) // 2, y + (layout.cell - fitted.height) // 2))
        _draw_lines(draw, caption_lines[index], font, x, y + layout.cell + layout.pad // 2, layout.cell, line_height)
    for row, lines in enumerate(label_lines):
        _, y = layout.origin(row * layout.ncol)
        top = y + (layout.cell - len(lines) * line_height) // 2  # centered on the pictures, not the captions
        _draw_lines(draw, lines, font, layout.pad, top, layout.label_width - layout.pad, line_height)
    return grid


def save_grid(
    path: PathLike,
    images: Sequence[Image.Image],
    captions: Sequence[str] | None = None,
    ncol: int | None = None,
    cell: int | None = None,
    row_labels: Sequence[str] | None = None,
    font_size: int | None = None,
    max_lines: int = 8,
) -> Path:
    """make_grid, written as a PNG atomically (temp file + rename); returns the path."""
    return save_png(make_grid(images, captions, ncol, cell, row_labels, font_size, max_lines), path)


def wrap_text(text: str, font: Font, width: int, max_lines: int | None = None) -> list[str]:
    """Greedy word wrap to ``width`` px; words wider than a line are split by characters.

    Newlines in ``text`` start new lines. Past ``max_lines`` the last kept line ends in "...".
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line, pieces = "", _split_word(word, font, width)
            lines.extend(pieces[:-1])
            line = pieces[-1]
        lines.append(line)
    while lines and not lines[-1]:  # no blank band for an empty or whitespace-only caption
        lines.pop()
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _fit_ellipsis(lines[-1], font, width)
    return lines


def _plan(
    images: Sequence[Image.Image],
    captions: Sequence[str] | None,
    ncol: int | None,
    cell: int | None,
    row_labels: Sequence[str] | None,
    font_size: int | None,
    max_lines: int,
) -> tuple[GridLayout, Font, list[list[str]], list[list[str]]]:
    if not images:
        raise ValueError("make_grid needs at least one image")
    ncol = len(images) if ncol is None else min(ncol, len(images))
    if ncol < 1:
        raise ValueError(f"ncol must be at least 1, got {ncol}")
    nrow = math.ceil(len(images) / ncol)
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    if row_labels is not None and len(row_labels) != nrow:
        raise ValueError(f"{len(row_labels)} row labels for {nrow} rows")
    cell = _auto_cell(images) if cell is None else cell
    pad = max(4, cell // 32)
    font = ImageFont.load_default(size=font_size or min(24, max(11, round(cell / 11))))
    line_height = _line_height(font)
    # Wrapping a little short of the cell keeps neighbouring captions from running into each other.
    caption_lines = [wrap_text(text, font, cell - pad, max_lines) for text in captions or [""] * len(images)]
    most = max(len(lines) for lines in caption_lines)
    band = most * line_height + pad if most else 0
    label_lines: list[list[str]] = []
    label_width = 0
    if row_labels is not None:
        # As wide as the longest label, but never wider than a picture: long names wrap instead.
        text_width = min(cell, max(math.ceil(font.getlength(label)) for label in row_labels))
        label_lines = [wrap_text(label, font, text_width, max(1, cell // line_height)) for label in row_labels]
        label_width = text_width + pad
    return GridLayout(ncol, nrow, cell, pad, band, label_width), font, caption_lines, label_lines


def _auto_cell(images: Sequence[Image.Image]) -> int:
    largest = max(max(image.size) for image in images)
    return largest if largest >= MIN_CELL else largest * math.ceil(MIN_CELL / largest)


def _fit(image: Image.Image, cell: int) -> Image.Image:
    """Scale to fit a cell×cell square, keeping the aspect ratio; NEAREST up (crisp pixels), LANCZOS down."""
    image = image.convert("RGB")
    scale = cell / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)


def _line_height(font: Font) -> int:
    # Text is drawn from its ascender line: the bbox bottom covers descenders; the rest is line spacing.
    bottom = math.ceil(font.getbbox("Ahgjy|")[3])
    return bottom + max(2, bottom // 5)


def _draw_lines(draw: ImageDraw.ImageDraw, lines: list[str], font: Font, x: int, y: int, width: int,
                line_height: int) -> None:
    """Each line centered horizontally in [x, x + width), top-down from y."""
    for number, line in enumerate(lines):
        offset = max(0, (width - round(font.getlength(line))) // 2)
        draw.text((x + offset, y + number * line_height), line, font=font, fill=TEXT)


def _split_word(word: str, font: Font, width: int) -> list[str]:
    pieces = [""]
    for char in word:
        if pieces[-1] and font.getlength(pieces[-1] + char) > width:
            pieces.append("")
        pieces[-1] += char
    return pieces


def _fit_ellipsis(line: str, font: Font, width: int) -> str:
    while line and font.getlength(line + "...") > width:
        line = line[:-1]
    return line.rstrip() + "..."
