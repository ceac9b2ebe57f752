"""Where the pretrained TinyFaces text-to-image model ships inside the package."""

from __future__ import annotations

from pathlib import Path


def model_path() -> Path:
    """Folder of the exported StableDiffusionPipeline (``from_pretrained`` reads it).

    Written by ``python -m lowdim_tinyfaces.train_model``; shipped as package data.
    """
    return Path(__file__).resolve().parent / "model"


def hypernet_path() -> Path:
    """The TinyFaces hypernetwork (phase 1 of HyperDreamBooth), trained as docs/results.md describes."""
    return Path(__file__).resolve().parent / "hypernet" / "hypernet.safetensors"


def describer_path() -> Path:
    """The reader of a face's looks (skin, hair, glasses) that names them in preview prompts."""
    return Path(__file__).resolve().parent / "hypernet" / "describer.safetensors"


def not_a_model_folder(folder: Path) -> str | None:
    """Why ``folder`` is not an exported TinyFaces folder, or None when it is one."""
    if not (folder / "model_index.json").is_file():
        return f"{folder}: not an exported TinyFaces folder (no model_index.json)"
    return None
