"""Training / evaluation data for the metric models: identity split and degradation.

Identities are split by a hash of their index: ~10% are *held out* (never seen
in training); held-out identities are split again into validation and test
halves. ``degrade`` is the mild blur / noise / colour jitter used as training
augmentation and as a stand-in for the artefacts of generated images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from ..identity import CARDINALITIES
from ..nuisance import hash_uniform
from ..styles import STYLES

_RADIX = np.concatenate([[1], np.cumprod(CARDINALITIES)[:-1]]).astype(np.int64)
HELDOUT_FRACTION = 0.1
_SPLIT_STREAM = 7_777
_HALF_STREAM = 7_778


def identity_index(levels: np.ndarray) -> np.ndarray:
    return (np.asarray(levels, dtype=np.int64) * _RADIX).sum(-1)


def split_of(levels: np.ndarray) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test for each identity row of ``levels``."""
    idx = identity_index(levels)
    held = hash_uniform(idx, _SPLIT_STREAM) < HELDOUT_FRACTION
    test = hash_uniform(idx, _HALF_STREAM) < 0.5
    return np.where(held, np.where(test, 2, 1), 0)


def sample_levels(n: int, rng: np.random.Generator, split: int) -> np.ndarray:
    """``n`` random identities (N, num_factors) from one split (rejection sampling)."""
    out = np.zeros((0, len(CARDINALITIES)), np.int64)
    while len(out) < n:
        cand = rng.integers(0, CARDINALITIES, size=(4 * n + 64, len(CARDINALITIES)))
        out = np.concatenate([out, cand[split_of(cand) == split]])
    return out[:n]


def other_styles(styles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random style different from each entry of ``styles``."""
    return (styles + rng.integers(1, len(STYLES), size=len(styles))) % len(STYLES)


def seeds(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 2**62, size=n, dtype=np.int64)


def _blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Per-image separable Gaussian blur, 5-tap, reflect padding."""
    n, c, h, w = images.shape
    taps = torch.arange(-2, 3, dtype=images.dtype)
    k = torch.exp(-0.5 * (taps[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, 5)
    x = images.reshape(1, n * c, h, w)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(n * c, 1, 1, 5), groups=n * c)
    x = F.conv2d(x, k.view(n * c, 1, 5, 1), groups=n * c)
    return x.view(n, c, h, w)


def degrade(images: Tensor, generator: torch.Generator, strength: float = 1.0) -> Tensor:
    """Mild random blur, Gaussian noise and colour jitter; images in [-1, 1].

    Per image: blur sigma ~ U(0.3, 0.9) with p=0.5, noise std ~ U(0, 0.1) with
    p=0.7, channel gains 1 +- 0.06, brightness +- 0.06, contrast 1 +- 0.1
    (all ranges times ``strength``).
    """
    n = images.shape[0]

    def u(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator)

    x = images
    sigma = (0.3 + 0.6 * u(n)) * strength
    blur_on = u(n) < 0.5
    x = torch.where(blur_on.view(-1, 1, 1, 1), _blur(x, sigma), x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + (u(n, 1, 1, 1) * 2 - 1) * 0.1 * strength
    gain = 1 + (u(n, 3, 1, 1) * 2 - 1) * 0.06 * strength
    shift = (u(n, 1, 1, 1) * 2 - 1) * 0.12 * strength  # 0.06 in [0, 1] units
    x = ((x - mean) * contrast + mean) * gain + shift
    noise_std = u(n, 1, 1, 1) * 0.2 * strength * (u(n, 1, 1, 1) < 0.7)  # 0.1 in [0, 1] units
    x = x + noise_std * torch.randn(x.shape, generator=generator)
    return x.clamp(-1, 1)
