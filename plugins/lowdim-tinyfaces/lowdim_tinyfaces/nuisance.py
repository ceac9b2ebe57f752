"""Per-image nuisance (pose, scale, lighting, clothing) derived from a seed.

Nuisance is a pure function of the seed via a counter-based hash, so a batch
of seeds is sampled in a few vectorised numpy ops and results never depend on
batch composition or on global RNG state.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

# Shift is relative to the canvas half-width so every resolution shows the same
# picture; 0.09 is about 1.5 px at 32x32.
MAX_SHIFT = 0.09
SCALE_RANGE = (0.92, 1.08)
BRIGHTNESS_RANGE = (0.85, 1.1)
MAX_LIGHT_GRADIENT = 0.25
NUM_SHIRT_COLOURS = 5
NUM_HAT_COLOURS = 4


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def hash_uniform(seeds: np.ndarray, stream: int) -> np.ndarray:
    """Uniform floats in [0, 1), one per seed, independent across streams."""
    s = np.asarray(seeds, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        x = _splitmix64(s * _GOLDEN + np.uint64(stream + 1) * _M2)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclasses.dataclass(frozen=True)
class Nuisance:
    """Vectorised nuisance for a batch; every field is an array of length N."""

    dx: np.ndarray  # canvas units, right is positive
    dy: np.ndarray  # canvas units, down is positive
    scale: np.ndarray
    brightness: np.ndarray
    light_x: np.ndarray  # lighting gradient vector in canvas units
    light_y: np.ndarray
    shirt: np.ndarray  # index into the shirt palette
    hat: np.ndarray  # index into the hat palette (only used by the hat style)

    @classmethod
    def from_seeds(cls, seeds: np.ndarray) -> Nuisance:
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)

        def u(stream: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
            return lo + (hi - lo) * hash_uniform(seeds, stream)

        angle = u(5, 0.0, 2 * np.pi)
        strength = u(6, 0.0, MAX_LIGHT_GRADIENT)
        return cls(
            dx=u(0, -MAX_SHIFT, MAX_SHIFT),
            dy=u(1, -MAX_SHIFT, MAX_SHIFT),
            scale=u(2, *SCALE_RANGE),
            brightness=u(3, *BRIGHTNESS_RANGE),
            light_x=strength * np.cos(angle),
            light_y=strength * np.sin(angle),
            shirt=np.floor(u(7) * NUM_SHIRT_COLOURS).astype(np.int64),
            hat=np.floor(u(8) * NUM_HAT_COLOURS).astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.dx)
