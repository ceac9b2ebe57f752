"""Identities of the TinyFaces world: tuples of discrete factors.

Identities are exact integer vectors so that identity fidelity of a generative
model can later be scored against ground truth instead of a learned face net.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

# Order matters: it fixes the mixed-radix index and the encoding layout.
FACTORS: dict[str, int] = {
    "face_shape": 4,  # oval, round, square, heart
    "skin_tone": 6,  # light .. dark
    "hair_colour": 7,  # black, dark brown, light brown, blonde, ginger, grey, blue
    "hair_style": 6,  # bald, buzz, side-swept, bob, long, afro
    "eye_colour": 5,  # brown, blue, green, grey, violet
    "eye_spacing": 3,  # narrow, medium, wide
    "eye_size": 3,  # small, medium, large
    "brows": 3,  # thin, thick, angled
    "nose": 3,  # button, long, wide
    "mouth": 4,  # smile, neutral, open, grin
    "glasses": 4,  # none, round, square, sunglasses
    "beard": 4,  # none, moustache, goatee, full
}

FACTOR_NAMES: tuple[str, ...] = tuple(FACTORS)
CARDINALITIES: np.ndarray = np.array(list(FACTORS.values()), dtype=np.int64)
NUM_IDENTITIES: int = int(np.prod(CARDINALITIES))
ENCODING_DIM: int = int(CARDINALITIES.sum())

# Little-endian mixed radix: the first factor varies fastest with the index.
_RADIX_WEIGHTS = np.concatenate([[1], np.cumprod(CARDINALITIES)[:-1]]).astype(np.int64)
_ONEHOT_OFFSETS = np.concatenate([[0], np.cumsum(CARDINALITIES)[:-1]]).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Identity:
    """One person of the TinyFaces world; every field is a factor level."""

    face_shape: int = 0
    skin_tone: int = 0
    hair_colour: int = 0
    hair_style: int = 0
    eye_colour: int = 0
    eye_spacing: int = 0
    eye_size: int = 0
    brows: int = 0
    nose: int = 0
    mouth: int = 0
    glasses: int = 0
    beard: int = 0

    def __post_init__(self) -> None:
        for name, card in FACTORS.items():
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or not 0 <= value < card:
                raise ValueError(f"{name}={value!r} is not an int in [0, {card})")
            # Normalise numpy ints so equality and hashing behave like plain ints.
            object.__setattr__(self, name, int(value))

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """Uniformly random identity."""
        return cls.from_vector(rng.integers(0, CARDINALITIES))

    @classmethod
    def from_index(cls, index: int) -> Identity:
        """Inverse of :attr:`index`; a bijection with ``range(NUM_IDENTITIES)``."""
        if not 0 <= index < NUM_IDENTITIES:
            raise ValueError(f"index {index} outside [0, {NUM_IDENTITIES})")
        return cls.from_vector((int(index) // _RADIX_WEIGHTS) % CARDINALITIES)

    @classmethod
    def from_vector(cls, vector: Sequence[int] | np.ndarray) -> Identity:
        values = [int(v) for v in vector]
        if len(values) != len(FACTORS):
            raise ValueError(f"expected {len(FACTORS)} factors, got {len(values)}")
        return cls(*values)

    @property
    def index(self) -> int:
        return int((self.to_vector() * _RADIX_WEIGHTS).sum())

    def to_vector(self) -> np.ndarray:
        """Factor levels as an int64 vector in :data:`FACTORS` order."""
        return np.array([getattr(self, n) for n in FACTOR_NAMES], dtype=np.int64)


def identities_to_array(identities: Iterable[Identity] | np.ndarray) -> np.ndarray:
    """Stack identities into an ``(N, num_factors)`` int64 array (arrays pass through)."""
    if isinstance(identities, np.ndarray):
        arr = identities.astype(np.int64, copy=False)
    else:
        arr = np.array([i.to_vector() for i in identities], dtype=np.int64)
    arr = arr.reshape(-1, len(FACTORS))
    if np.any(arr < 0) or np.any(arr >= CARDINALITIES):
        raise ValueError("factor level out of range")
    return arr


def sample_identities(n: int, rng: np.random.Generator) -> list[Identity]:
    return [Identity.from_vector(v) for v in rng.integers(0, CARDINALITIES, size=(n, len(FACTORS)))]


def encode_identities(identities: Iterable[Identity] | np.ndarray) -> np.ndarray:
    """Concatenated one-hot code, ``(N, ENCODING_DIM)`` float32.

    Metric learning on this code treats every factor as equally important and
    makes Hamming-style distances between identities a plain L1/2 norm.
    """
    arr = identities_to_array(identities)
    out = np.zeros((arr.shape[0], ENCODING_DIM), dtype=np.float32)
    out[np.arange(arr.shape[0])[:, None], arr + _ONEHOT_OFFSETS] = 1.0
    return out


def decode_identities(codes: np.ndarray) -> list[Identity]:
    """Argmax per factor block; inverse of :func:`encode_identities` on one-hot input."""
    codes = np.asarray(codes).reshape(-1, ENCODING_DIM)
    levels = [
        codes[:, off : off + card].argmax(axis=1)
        for off, card in zip(_ONEHOT_OFFSETS, CARDINALITIES, strict=True)
    ]
    return [Identity.from_vector(v) for v in np.stack(levels, axis=1)]
