"""Registers TinyFaces with lowdim: the model alias ``tinyfaces``, the renderer as a data source."""

from __future__ import annotations

from lowdim.hookspecs import hookimpl
from lowdim_tinyfaces.model_files import model_path
from lowdim_tinyfaces.styles import STYLES, prompt_for


def preview_prompts() -> tuple[str, ...]:
    return tuple(prompt_for(style, "[V] face") for style in STYLES)


@hookimpl
def register_backends(register):
    from lowdim_sd.plugin import SDBackend

    register(SDBackend(
        "tinyfaces", str(model_path()), preview_prompts=preview_prompts(),
        description="TinyFaces: a 32x32 SD-architecture model lowdim trains on its procedural faces",
    ))


@hookimpl
def register_datasets(register):
    from lowdim_tinyfaces import world

    register("tinyfaces", world.sample_dataset)


@hookimpl
def register_metrics(register):
    from lowdim_tinyfaces.metrics import load_identity_encoder, load_style_classifier

    register("tinyfaces-identity", load_identity_encoder)
    register("tinyfaces-style", load_style_classifier)
