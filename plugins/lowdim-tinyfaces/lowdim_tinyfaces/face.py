"""Draws the cartoon face of each identity, all images of a batch at once.

Per-image choices (hair style, mouth, ...) are expressed as table look-ups of
continuous shape parameters or as ``torch.where`` between a few candidate
distance fields, so the whole batch is drawn with the same tensor program.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from . import palette as pal
from .identity import FACTOR_NAMES
from .sdf import FAR, capsule, circle, coverage, ellipse, paint, rounded_box, superellipse

_F = {name: i for i, name in enumerate(FACTOR_NAMES)}


def _par(table: Tensor, idx: Tensor, col: int | None = None) -> Tensor:
    """Per-image scalar parameter shaped (N, 1, 1) for broadcasting on grids."""
    vals = table[idx] if col is None else table[idx, col]
    return vals.view(-1, 1, 1)


def _rgb(table: Tensor, idx: Tensor) -> Tensor:
    """Per-image colour shaped (N, 1, 1, 3)."""
    return table[idx].view(-1, 1, 1, 3)


@dataclasses.dataclass
class Head:
    """Head-relative coordinate grids and the face outline shared by all parts."""

    x: Tensor  # (N, H, W), origin at the head centre
    y: Tensor
    px: Tensor  # pixel size in the same units, (N, 1, 1)
    levels: Tensor  # (N, num_factors) long
    rx: Tensor
    ry: Tensor
    power: Tensor
    taper: Tensor

    def level(self, name: str) -> Tensor:
        return self.levels[:, _F[name]]

    def outline(self, grow: Tensor | float = 0.0) -> Tensor:
        """Distance to the face outline grown outwards by ``grow``."""
        # Narrowing x towards the chin turns an ellipse into a heart-ish shape.
        narrowing = 1.0 - self.taper * (self.y / self.ry).clamp(0.0, 1.0)
        return superellipse(self.x / narrowing, self.y, self.rx + grow, self.ry + grow, self.power)

    def cov(self, d: Tensor) -> Tensor:
        return coverage(d, self.px)


def make_head(levels: Tensor, x: Tensor, y: Tensor, px: Tensor) -> Head:
    shape = levels[:, _F["face_shape"]]
    return Head(
        x=x,
        y=y - pal.HEAD_CY,
        px=px,
        levels=levels,
        rx=_par(pal.FACE, shape, 0),
        ry=_par(pal.FACE, shape, 1),
        power=_par(pal.FACE, shape, 2),
        taper=_par(pal.FACE, shape, 3),
    )


def draw_face(img: Tensor, h: Head, shirt: Tensor) -> tuple[Tensor, Tensor]:
    """Paint body, head and features over the background ``img`` (N, H, W, 3).

    Also returns the figure's coverage (N, H, W), which styles use to treat
    the background differently from the person.
    """
    hair = _rgb(pal.HAIR, h.level("hair_colour"))
    skin = _rgb(pal.SKIN, h.level("skin_tone"))
    behind, cap, face = _hair_behind(h), _hair_cap(h), h.cov(h.outline())
    img = paint(img, behind, hair)
    img, body = _draw_body(img, h, skin, _rgb(pal.SHIRT, shirt))
    img = paint(img, face, skin)
    img = _draw_eyes(img, h)
    img = paint(img, _brows(h), hair * 0.8)
    img = paint(img, _nose(h), skin * 0.72)
    img = paint(img, _beard(h), hair * 0.9)
    img = _draw_mouth(img, h)
    img = paint(img, cap, hair)
    figure = torch.maximum(torch.maximum(behind, body), torch.maximum(cap, face))
    return _draw_glasses(img, h), figure


def _hair_params(h: Head) -> list[Tensor]:
    style = h.level("hair_style")
    return [_par(pal.HAIR_STYLE, style, j) for j in range(pal.HAIR_STYLE.shape[1])]


def _hair_behind(h: Head) -> Tensor:
    """Long hair hanging behind the head and the afro puff."""
    thick, _, _, bottom, puff, _ = _hair_params(h)
    top = -0.2
    hw = h.rx + thick + 0.05
    back = rounded_box(h.x, h.y, 0.0, (top + bottom) / 2, hw, (bottom - top).clamp(min=0) / 2, 0.14)
    back = torch.where(bottom > top, back, FAR)
    d_puff = circle(h.x, h.y, 0.0, -0.28, puff)
    d_puff = torch.where(puff > 0, d_puff, FAR)
    return h.cov(torch.minimum(back, d_puff))


def _hair_cap(h: Head) -> Tensor:
    """Hair over the top of the head down to a (possibly slanted) hairline."""
    thick, line, slant, _, _, _ = _hair_params(h)
    d = torch.maximum(h.outline(thick), h.y - (line + slant * h.x))
    return h.cov(torch.where(thick > 0, d, FAR))


def _draw_body(img: Tensor, h: Head, skin: Tensor, shirt: Tensor) -> tuple[Tensor, Tensor]:
    ears_visible = _hair_params(h)[5]
    torso = h.cov(ellipse(h.x, h.y, 0.0, 1.45, 0.95, 0.62))
    neck = h.cov(rounded_box(h.x, h.y, 0.0, h.ry + 0.12, 0.16, 0.22, 0.05))
    ears = h.cov(ellipse(h.x.abs(), h.y, h.rx, 0.02, 0.09, 0.13)) * ears_visible
    img = paint(paint(paint(img, torso, shirt), neck, skin * 0.85), ears, skin * 0.92)
    return img, torch.maximum(torch.maximum(torso, neck), ears)


def _draw_eyes(img: Tensor, h: Head) -> Tensor:
    dx = _par(pal.EYE_DX, h.level("eye_spacing"))
    r = _par(pal.EYE_R, h.level("eye_size"))
    ax = h.x.abs()  # mirror: one evaluation draws both eyes
    img = paint(img, h.cov(ellipse(ax, h.y, dx, pal.EYE_Y, r, r * 0.85)), pal.EYE_WHITE)
    img = paint(
        img, h.cov(circle(ax, h.y, dx, pal.EYE_Y, r * 0.68)), _rgb(pal.EYE, h.level("eye_colour"))
    )
    return paint(img, h.cov(circle(ax, h.y, dx, pal.EYE_Y, r * 0.3)), pal.PUPIL)


def _brows(h: Head) -> Tensor:
    dx = _par(pal.EYE_DX, h.level("eye_spacing"))
    r = _par(pal.EYE_R, h.level("eye_size"))
    kind = h.level("brows")
    half, drop = _par(pal.BROWS, kind, 0), _par(pal.BROWS, kind, 1)
    y = pal.EYE_Y - r - 0.08
    d = capsule(h.x.abs(), h.y, dx - r, y + drop, dx + r, y - drop * 0.4, half)
    return h.cov(d)


def _nose(h: Head) -> Tensor:
    n = h.level("nose")
    ax, ay, bx, by, r = (_par(pal.NOSE, n, j) for j in range(5))
    return h.cov(capsule(h.x, h.y, ax, ay, bx, by, r))


def _beard(h: Head) -> Tensor:
    kind = h.level("beard").view(-1, 1, 1)
    m = pal.MOUTH_Y
    moustache = capsule(h.x, h.y, -0.10, m - 0.075, 0.10, m - 0.075, 0.045)
    goatee = ellipse(h.x, h.y, 0.0, m + 0.16, 0.10, 0.11)
    full = torch.minimum(torch.maximum(h.outline(0.015), 0.12 - h.y), moustache)
    d = torch.where(kind == 1, moustache, torch.where(kind == 2, goatee, full))
    return h.cov(torch.where(kind == 0, FAR, d))


def _draw_mouth(img: Tensor, h: Head) -> Tensor:
    kind = h.level("mouth")
    k = kind.view(-1, 1, 1)
    m = pal.MOUTH_Y
    smile = torch.maximum(circle(h.x, h.y, 0.0, m - 0.15, 0.19).abs() - 0.032, m - 0.1 - h.y)
    neutral = capsule(h.x, h.y, -0.13, m, 0.13, m, 0.032)
    open_o = ellipse(h.x, h.y, 0.0, m, 0.085, 0.075)
    grin = torch.maximum(circle(h.x, h.y, 0.0, m - 0.06, 0.17), m - 0.05 - h.y)
    fill = torch.where(k == 2, open_o, torch.where(k == 3, grin, FAR))
    img = paint(img, h.cov(fill), _rgb(pal.MOUTH_FILL, kind))
    line = torch.where(k == 0, smile, torch.where(k == 1, neutral, FAR))
    line = torch.where(k == 3, grin.abs() - 0.022, line)
    return paint(img, h.cov(line), pal.LIPS)


def _draw_glasses(img: Tensor, h: Head) -> Tensor:
    kind = h.level("glasses")
    k = kind.view(-1, 1, 1)
    dx = _par(pal.EYE_DX, h.level("eye_spacing"))
    r = _par(pal.EYE_R, h.level("eye_size"))
    ax = h.x.abs()
    round_lens = circle(ax, h.y, dx, pal.EYE_Y, r + 0.06)
    box_lens = rounded_box(ax, h.y, dx, pal.EYE_Y, r + 0.065, r + 0.04, 0.03)
    lens = torch.where(k == 1, round_lens, box_lens)
    lens = torch.where(k == 0, FAR, lens)
    tinted = (k == 3).float()
    # Not fully opaque, so eyes behind sunglasses still tell identities apart.
    img = paint(img, h.cov(lens) * tinted * 0.8, pal.SUNGLASS_LENS)
    bridge = capsule(ax, h.y, 0.0, pal.EYE_Y - 0.03, dx - r, pal.EYE_Y - 0.03, 0.025)
    frame = torch.minimum(lens.abs() - 0.032, torch.where(k == 0, FAR, bridge))
    return paint(img, h.cov(frame), _rgb(pal.GLASSES_FRAME, kind))


def draw_hat(img: Tensor, h: Head, colour: Tensor, on: Tensor) -> tuple[Tensor, Tensor]:
    """A brimmed hat for images where ``on`` (N,) is true; returns its coverage too."""
    top = -h.ry
    brim = rounded_box(h.x, h.y, 0.0, top + 0.16, h.rx + 0.2, 0.05, 0.04)
    crown = rounded_box(h.x, h.y, 0.0, top - 0.06, h.rx * 0.82, 0.24, 0.09)
    band = torch.maximum(crown, (h.y - (top + 0.06)).abs() - 0.05)
    alpha = h.cov(torch.minimum(brim, crown)) * on.view(-1, 1, 1).float()
    img = paint(img, alpha, colour)
    return paint(img, h.cov(band) * on.view(-1, 1, 1).float(), colour * 0.55 + 0.35), alpha
