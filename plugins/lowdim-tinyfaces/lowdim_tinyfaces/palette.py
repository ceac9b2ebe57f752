"""Colours and per-level geometry of the identity factors.

Tables are indexed by factor level; sizes are in head-local canvas units
(canvas spans [-1, 1]) so a face reads the same at any resolution.
"""

from __future__ import annotations

import torch

SKIN = torch.tensor(
    [
        [1.00, 0.87, 0.77],
        [0.96, 0.78, 0.63],
        [0.86, 0.65, 0.48],
        [0.73, 0.52, 0.35],
        [0.55, 0.37, 0.24],
        [0.38, 0.25, 0.16],
    ]
)
HAIR = torch.tensor(
    [
        [0.07, 0.06, 0.06],  # black
        [0.30, 0.17, 0.08],  # dark brown
        [0.60, 0.42, 0.22],  # light brown
        [0.95, 0.82, 0.42],  # blonde
        [0.88, 0.36, 0.10],  # ginger
        [0.80, 0.80, 0.84],  # grey
        [0.20, 0.42, 0.92],  # dyed blue
    ]
)
EYE = torch.tensor(
    [
        [0.42, 0.22, 0.08],  # brown
        [0.15, 0.45, 0.95],  # blue
        [0.15, 0.68, 0.25],  # green
        [0.55, 0.58, 0.62],  # grey
        [0.58, 0.25, 0.80],  # violet
    ]
)
SHIRT = torch.tensor(
    [
        [0.32, 0.42, 0.58],
        [0.52, 0.52, 0.52],
        [0.38, 0.52, 0.36],
        [0.62, 0.45, 0.33],
        [0.30, 0.30, 0.36],
    ]
)
HAT = torch.tensor(
    [
        [0.16, 0.16, 0.20],
        [0.62, 0.10, 0.12],
        [0.12, 0.28, 0.62],
        [0.45, 0.32, 0.18],
    ]
)
EYE_WHITE = torch.tensor([0.98, 0.98, 0.98])
PUPIL = torch.tensor([0.04, 0.04, 0.05])
LIPS = torch.tensor([0.55, 0.12, 0.14])
MOUTH_FILL = torch.tensor(
    [
        [0.0, 0.0, 0.0],  # smile: no fill
        [0.0, 0.0, 0.0],  # neutral: no fill
        [0.35, 0.05, 0.08],  # open: dark cavity
        [0.98, 0.98, 0.95],  # grin: teeth
    ]
)
GLASSES_FRAME = torch.tensor(
    [
        [0.0, 0.0, 0.0],  # none
        [0.08, 0.08, 0.08],  # round, black
        [0.55, 0.10, 0.10],  # square, red
        [0.05, 0.05, 0.05],  # sunglasses
    ]
)
SUNGLASS_LENS = torch.tensor([0.10, 0.10, 0.16])

# Head centre in canvas coordinates (y grows downwards).
HEAD_CY = -0.10

# face_shape -> (rx, ry, superellipse power, chin taper)
FACE = torch.tensor(
    [
        [0.50, 0.62, 2.0, 0.00],  # oval
        [0.58, 0.57, 2.0, 0.00],  # round
        [0.53, 0.58, 4.5, 0.00],  # square
        [0.57, 0.62, 2.0, 0.45],  # heart: pointed chin
    ]
)
EYE_DX = torch.tensor([0.19, 0.24, 0.29])
EYE_R = torch.tensor([0.10, 0.13, 0.16])
EYE_Y = -0.03

# brows -> (half thickness, inner-end drop)
BROWS = torch.tensor([[0.022, 0.0], [0.048, 0.0], [0.034, 0.07]])

# nose -> capsule (ax, ay, bx, by, radius), relative to the head centre
NOSE = torch.tensor(
    [
        [0.0, 0.16, 0.0, 0.16, 0.055],  # button
        [0.03, 0.01, 0.0, 0.18, 0.030],  # long
        [-0.07, 0.17, 0.07, 0.17, 0.045],  # wide
    ]
)
MOUTH_Y = 0.35

# hair_style -> (cap thickness, hairline y, hairline slant, back-hair bottom y,
#                puff radius, ear visibility); y relative to the head centre,
#                zero thickness / length / radius switches that part off
HAIR_STYLE = torch.tensor(
    [
        [0.00, -0.90, 0.00, -9.0, 0.00, 1.0],  # bald
        [0.035, -0.33, 0.00, -9.0, 0.00, 1.0],  # buzz
        [0.10, -0.30, 0.30, -9.0, 0.00, 1.0],  # side-swept
        [0.13, -0.24, 0.00, 0.42, 0.00, 0.0],  # bob
        [0.10, -0.32, -0.25, 1.20, 0.00, 0.0],  # long
        [0.16, -0.34, 0.00, -9.0, 0.66, 0.0],  # afro
    ]
)
