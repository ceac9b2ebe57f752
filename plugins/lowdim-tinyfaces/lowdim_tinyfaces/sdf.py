"""Signed-distance primitives and alpha compositing on batched coordinate grids.

Every function takes grids shaped (N, H, W) and parameters that broadcast
against them (usually (N, 1, 1)); distances are negative inside.
"""

from __future__ import annotations

import torch
from torch import Tensor

FAR = 1e3  # distance used to switch a shape off without branching per image


def circle(x: Tensor, y: Tensor, cx, cy, r) -> Tensor:
    return torch.hypot(x - cx, y - cy) - r


def ellipse(x: Tensor, y: Tensor, cx, cy, rx, ry) -> Tensor:
    # First-order distance estimate k0 (k0 - 1) / k1: close to Euclidean near
    # the boundary, which is all anti-aliasing needs.
    px, py = x - cx, y - cy
    k0 = torch.hypot(px / rx, py / ry)
    k1 = torch.hypot(px / (rx * rx), py / (ry * ry))
    return k0 * (k0 - 1.0) / (k1 + 1e-6)


def superellipse(x: Tensor, y: Tensor, rx, ry, p) -> Tensor:
    """Approximate distance to |x/rx|^p + |y/ry|^p = 1 (p=2 ellipse, large p box)."""
    k = ((x / rx).abs().pow(p) + (y / ry).abs().pow(p)).pow(1.0 / p)
    return (k - 1.0) * torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry))


def rounded_box(x: Tensor, y: Tensor, cx, cy, hw, hh, r) -> Tensor:
    qx = (x - cx).abs() - hw + r
    qy = (y - cy).abs() - hh + r
    outside = torch.hypot(qx.clamp(min=0), qy.clamp(min=0))
    inside = torch.maximum(qx, qy).clamp(max=0)
    return outside + inside - r


def capsule(x: Tensor, y: Tensor, ax, ay, bx, by, r) -> Tensor:
    """Distance to the segment a-b thickened by r (a == b gives a circle)."""
    pax, pay = x - ax, y - ay
    bax, bay = bx - ax, by - ay
    denom = bax * bax + bay * bay + 1e-9
    h = ((pax * bax + pay * bay) / denom).clamp(0.0, 1.0)
    return torch.hypot(pax - bax * h, pay - bay * h) - r


def coverage(d: Tensor, pixel: Tensor | float) -> Tensor:
    """Anti-aliased coverage: a one-pixel linear ramp across the boundary."""
    return (0.5 - d / pixel).clamp(0.0, 1.0)


def paint(img: Tensor, alpha: Tensor, colour: Tensor) -> Tensor:
    """Composite ``colour`` over ``img`` (N, H, W, 3) with coverage ``alpha`` (N, H, W)."""
    return torch.lerp(img, colour.expand_as(img), alpha.unsqueeze(-1))
