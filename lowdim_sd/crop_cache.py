"""Face crops kept in memory between epochs: cropping runs a face detector, far slower than decoding the file, and
train-hypernet reads every picture each epoch."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch
from torch import Tensor


class CropCache:
    """uint8 crops by key (a picture's path, or its path and what a stat tells of it), least recently used dropped
    first once they pass ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Tensor | None:
        pixels = self._items.get(key)
        if pixels is not None:
            self._items.move_to_end(key)
        return pixels

    def put(self, key: Hashable, pixels: Tensor) -> None:
        if pixels.nbytes > self.max_bytes:
            return
        replaced = self._items.pop(key, None)
        self.bytes -= replaced.nbytes if replaced is not None else 0
        self._items[key] = pixels
        self.bytes += pixels.nbytes
        while self.bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= dropped.nbytes

    def crop(self, key: Hashable, read: Callable[[], Tensor]) -> Tensor:
        """The crop kept under ``key``, else ``read()``'s (a (3, S, S) image in [-1, 1]) kept: as its own 8-bit
        pixels (0.75 MiB at 512 px, not 3 as floats), given back as those whether kept or not, so a read is the
        same image either way."""
        pixels = self.get(key)
        if pixels is None:
            pixels = ((read() + 1.0) * 127.5).round().to(torch.uint8)  # the crop's own 8-bit pixels
            self.put(key, pixels)
        return pixels.to(torch.float32) / 127.5 - 1.0  # exactly as images.pil_to_tensor scales them
