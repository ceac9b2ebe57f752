"""Review FL: the picture the model (and a metric) sees. load_image resizes with LANCZOS as its docstring says, so a
fine pattern averages to grey instead of aliasing to one of its colours (I8: NEAREST); picture_tensor reads an open
picture as load_image reads the file: transparency over white, 16-bit grey rescaled (I9: a plain convert("RGB"))."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from lowdim_sd.images import load_image, picture_tensor


def test_a_one_pixel_checkerboard_shrinks_to_grey(tmp_path):
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    path = tmp_path / "board.png"
    Image.fromarray(board).convert("RGB").save(path)
    tensor = load_image(path, 32)
    assert tensor.shape == (3, 32, 32)
    assert float(tensor.abs().max()) < 0.25  # LANCZOS: grey; NEAREST: all -1 or all +1
    expected = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.LANCZOS), np.float32)
    assert torch.allclose(tensor, torch.from_numpy(expected).permute(2, 0, 1) / 127.5 - 1)


def test_picture_tensor_reads_an_open_picture_as_load_image_reads_its_file(tmp_path):
    clear = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    assert torch.equal(picture_tensor(clear, 16), torch.ones(3, 16, 16))  # over white, as load_image composites
    deep = Image.fromarray(np.full((40, 40), 30000, np.uint16))  # 16-bit grey, under half its range
    path = tmp_path / "deep.png"
    deep.save(path)
    assert torch.equal(picture_tensor(Image.open(path), 16), load_image(path, 16))
    assert float(picture_tensor(Image.open(path), 16).max()) < 0.0  # not clipped to white
