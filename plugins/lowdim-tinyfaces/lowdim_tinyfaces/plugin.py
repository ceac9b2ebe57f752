"""Registers TinyFaces with lowdim: the model alias ``tinyfaces``, its metrics and its commands.

The renderer of synthetic identities is imported directly (``lowdim_tinyfaces.world.sample_dataset``):
nothing in lowdim looks data sources up by name, so there is no hook for them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lowdim.hookspecs import RegisterBackend, RegisterMetric, hookimpl
from lowdim.paths import expand_user
from lowdim_tinyfaces.model_files import describer_path, hypernet_path, model_path

if TYPE_CHECKING:
    import typer

    from lowdim_sd.plugin import SDBackend

# looks and styles import torch, so they are imported where used: `lowdim --help` loads this module.


def preview_prompts() -> tuple[str, ...]:
    from lowdim_tinyfaces.prompts import STYLES, prompt_for

    return tuple(prompt_for(style, "[V] face") for style in STYLES)


def bench_prompts() -> tuple[str, ...]:
    """Every style with the training subject, then again with "person", a word no training caption used."""
    from lowdim_tinyfaces.prompts import STYLES, prompt_for

    return preview_prompts() + tuple(prompt_for(style, "[V] person") for style in STYLES)


# A folder written by `python -m lowdim_tinyfaces.train_model --model-dir FOLDER` (TRAINING.md), registered as
# the model RETRAINED_NAME beside the shipped one: its own name keeps adapters and hypernetworks made on it
# apart from the shipped model's, and it gets no default hypernetwork (the shipped one was made on the other).
RETRAINED_ENV, RETRAINED_NAME = "LOWDIM_TINYFACES_RETRAINED", "tinyfaces-retrained"


def describe_face(image):
    """The looks of a face in words; the describer (torch) loads on the first face, so `lowdim models` lists
    this backend without it."""
    from lowdim_tinyfaces.looks import describe_face

    return describe_face(image)


def _tinyfaces_backend(name: str, source: str, description: str, hypernet: str | None) -> SDBackend:
    from lowdim_sd.plugin import SDBackend

    return SDBackend(
        name, source, preview_prompts=preview_prompts(), bench_prompts=bench_prompts(),
        description=description, default_hypernet=hypernet,
        crops_faces=False,  # 32x32 cartoon faces: a face detector finds nothing in them, use them as they are
        # The 40 steps after the prediction: 8 noise draws per step at 1e-2 bind far more identity than one at
        # 3e-3 for 1.8x the time (chosen on validation identities, docs/ladder.md rung 12).
        finetune_batch=8, finetune_lr=1e-2,
        # Hair, skin and glasses in words after "[V] face": the base model draws named looks in every style.
        describe_subject=describe_face if describer_path().exists() else None,
        # A second preview row with the adapter's parts apart (text encoder's part off, UNet part from 30% of
        # the steps): it keeps the styles the whole adapter overwrites, for no training time, and 32 px
        # pictures draw in a blink (docs/results.md, session 22).
        preview_draws=("1", "te=0@start=0.3"),
    )


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    description = "TinyFaces: a 32x32 SD-architecture model lowdim trains on its procedural faces"
    hypernet = str(hypernet_path()) if hypernet_path().exists() else None
    register(_tinyfaces_backend("tinyfaces", str(model_path()), description, hypernet))
    retrained = os.environ.get(RETRAINED_ENV)
    if retrained:
        register(_tinyfaces_backend(
            RETRAINED_NAME, str(expand_user(retrained).resolve()),
            f"TinyFaces retrained by train_model, from {RETRAINED_ENV}={retrained}", None))


@hookimpl
def register_metrics(register: RegisterMetric) -> None:
    """tinyfaces-identity, tinyfaces-style and tinyfaces-image: ``lowdim.metrics.Metric`` factories."""
    from lowdim_tinyfaces.metrics.plugin_metrics import FACTORIES

    for name, factory in FACTORIES.items():
        register(name, factory)


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    from lowdim_tinyfaces.commands import register

    register(cli)
