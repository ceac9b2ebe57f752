"""Labelled grids: geometry adds up, captions and row labels are really drawn, files reopen as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from lowdim_sd.grid import BACKGROUND, MIN_CELL, GridLayout, _plan, make_grid, save_grid, wrap_text

LONG = "a photo of sks person wearing a red hat, highly detailed portrait, studio lighting, 85mm lens"


def grid_layout(images: list[Image.Image], captions: list[str] | None = None, ncol: int | None = None,
                cell: int | None = None, row_labels: list[str] | None = None) -> GridLayout:
    """The geometry make_grid draws with, from its private planner (the layout is not public API)."""
    return _plan(images, captions, ncol, cell, row_labels, font_size=None, max_lines=8)[0]


def _squares(count: int, side: int = 32) -> list[Image.Image]:
    return [Image.new("RGB", (side, side), (40 * i % 256, 100, 200)) for i in range(count)]


def _is_background(region: Image.Image) -> bool:
    return bool((np.asarray(region) == np.array(BACKGROUND, dtype=np.uint8)).all())


def test_geometry_without_captions() -> None:
    images = _squares(5)
    layout = grid_layout(images, ncol=2)
    assert (layout.ncol, layout.nrow, layout.band, layout.label_width) == (2, 3, 0, 0)
    assert layout.cell == MIN_CELL  # 32 px pictures are blown up by a whole factor
    pad = layout.pad
    assert (layout.width, layout.height) == (2 * 128 + 3 * pad, 3 * 128 + 4 * pad)
    assert make_grid(images, ncol=2).size == (layout.width, layout.height)
    assert grid_layout(images).ncol == 5 and grid_layout(images).nrow == 1  # default: one row
    assert grid_layout(images, ncol=9).ncol == 5  # never wider than the pictures


def test_caption_band_grows_with_the_longest_caption() -> None:
    images = _squares(4)
    short = grid_layout(images, ["a", "b", "c", "d"], ncol=2)
    long = grid_layout(images, ["a", LONG, "c", ""], ncol=2)
    assert 0 < short.band < long.band
    assert long.height == 2 * (long.cell + long.band) + 3 * long.pad
    assert long.width == short.width == grid_layout(images, ncol=2).width
    assert make_grid(images, ["a", LONG, "c", ""], ncol=2).size == (long.width, long.height)


def test_captions_are_drawn_under_their_pictures() -> None:
    images = _squares(2)
    layout = grid_layout(images, [LONG, ""])
    grid = make_grid(images, [LONG, ""])
    for index, expect_text in [(0, True), (1, False)]:
        x, y = layout.origin(index)
        band = grid.crop((x, y + layout.cell, x + layout.cell, y + layout.cell + layout.band))
        assert _is_background(band) is not expect_text


def test_small_pictures_are_upscaled_crisply() -> None:
    tiny = Image.new("RGB", (2, 2))
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    tiny.putdata(colors)
    grid = make_grid([tiny], cell=64)
    pad = grid_layout([tiny], cell=64).pad
    cells = np.asarray(grid)[pad:pad + 64, pad:pad + 64]
    for (row, col), color in zip([(0, 0), (0, 1), (1, 0), (1, 1)], colors, strict=True):
        block = cells[row * 32:(row + 1) * 32, col * 32:(col + 1) * 32]
        assert (block == np.array(color, dtype=np.uint8)).all()  # NEAREST: no blended edges


def test_row_labels_sit_in_a_left_column() -> None:
    images = _squares(4)
    plain = grid_layout(images, ncol=2)
    labelled = grid_layout(images, ncol=2, row_labels=["alice", "bob"])
    assert labelled.label_width > 0 and labelled.width == plain.width + labelled.label_width
    grid = make_grid(images, ncol=2, row_labels=["alice", "bob"])
    for row in range(2):
        _, y = labelled.origin(row * 2)
        assert not _is_background(grid.crop((0, y, labelled.label_width, y + labelled.cell)))
    with pytest.raises(ValueError, match="row labels"):
        make_grid(images, ncol=2, row_labels=["only one"])


def test_mismatched_captions_and_empty_input_are_refused() -> None:
    with pytest.raises(ValueError, match="captions"):
        make_grid(_squares(3), ["one", "two"])
    with pytest.raises(ValueError, match="make_grid needs at least one image"):
        make_grid([])


def test_wrap_text_fits_width_and_keeps_words() -> None:
    font = ImageFont.load_default(size=12)
    lines = wrap_text(LONG, font, 100)
    assert len(lines) > 1 and all(font.getlength(line) <= 100 for line in lines)
    assert " ".join(lines).split() == LONG.split()
    pieces = wrap_text("x" * 80, font, 60)  # one word wider than a line is split by characters
    assert "".join(pieces) == "x" * 80 and all(font.getlength(p) <= 60 for p in pieces)
    capped = wrap_text(LONG, font, 100, max_lines=2)
    assert len(capped) == 2 and capped[-1].endswith("...") and font.getlength(capped[-1]) <= 100
    assert wrap_text("   ", font, 100) == []


def test_save_grid_reopens_as_png(tmp_path: Path) -> None:
    path = save_grid(tmp_path / "sheets" / "grid.png", _squares(3), ["x", "y", LONG], ncol=3)
    with Image.open(path) as reopened:
        assert reopened.format == "PNG"
        layout = grid_layout(_squares(3), ["x", "y", LONG], ncol=3)
        assert reopened.size == (layout.width, layout.height)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left behind
