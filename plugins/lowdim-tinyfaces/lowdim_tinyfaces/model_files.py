"""Where the pretrained TinyFaces text-to-image model ships inside the package."""

from __future__ import annotations

import re
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


def in_its_checkout(package: Path = Path(__file__).resolve().parent) -> bool:
    """Whether the package folder ``package`` is in its source checkout (``plugins/lowdim-tinyfaces``, whose
    pyproject.toml sits above it), where git restores a shipped file a dev script overwrites. False when installed
    from a wheel: the folder is then pip's, in site-packages, and nothing would restore what a script wrote there
    (pip's RECORD hashes go stale too)."""
    try:
        pyproject = (package.parent / "pyproject.toml").read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r"""^name\s*=\s*["']lowdim-tinyfaces["']""", pyproject, re.MULTILINE) is not None


def shipped_folder_default(shipped: Path) -> Path | None:
    """A dev script's folder of shipped files (``shipped``) as its default, in the checkout only; None when
    installed, where the script must be told a folder of its own (``installed_refusal``)."""
    return shipped if in_its_checkout() else None


def installed_refusal(flag: str, what: str) -> str:
    """One line: an installed package's files are not a dev script's to overwrite by default."""
    return (f"{flag} is required here: lowdim-tinyfaces is installed (not its checkout), and by default this "
            f"would overwrite the {what}, which pip installed in {Path(__file__).resolve().parent}; name a folder "
            f"of your own")
