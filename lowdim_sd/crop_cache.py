"""Face crops kept in memory between epochs: cropping runs a face detector, far slower than decoding the file, and
train-hypernet reads every picture each epoch."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from torch import Tensor


class CropCache:
    """uint8 crops by path, least recently used dropped first once they pass ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Path, Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, path: Path) -> Tensor | None:
        pixels = self._items.get(path)
        if pixels is not None:
            self._items.move_to_end(path)
        return pixels

    def put(self, path: Path, pixels: Tensor) -> None:
        if pixels.nbytes > self.max_bytes:
            return
        self._items[path] = pixels
        self.bytes += pixels.nbytes
        while self.bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= dropped.nbytes
