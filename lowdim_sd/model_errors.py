"""``ModelLoadError``, the error of a model that could not be found or read, and the refusals of a model path that
need no file read (a pickle; a path that is not there and no hub id), in a module of its own: ``loading`` imports
``model_names`` and ``ldm_checkpoint``, which raise it too, so living in ``loading`` it could only be imported by them
inside a function; and ``personalize_checks`` says a mistyped path in the load's own words before any photo is read.
``loading`` re-exports the error, and most callers import it from there."""

from __future__ import annotations

import re
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.file_reading import PICKLE_SUFFIXES


class ModelLoadError(LowdimError):
    """The model could not be found or read."""


def looks_like_hub_id(text: str) -> bool:
    """``name`` or ``owner/name`` in the characters the hub allows: a path with a space or a backslash is not."""
    return re.fullmatch(r"(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]+", text) is not None and not text.startswith(".")


def refuse_pickled_model(path: Path) -> None:
    """A pickle checkpoint is refused by its name, before it is opened: loading one can run code."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelLoadError(f"{path}: pickle checkpoints can run code when loaded; convert it to .safetensors first")


def refuse_missing_model(source: str, path: Path) -> None:
    """``source`` (read as ``path``), which is not there, refused unless it can name a model on the hub.
    "My Models/sd15" is a folder's name and "x/model.safetensors" a file's, not hub ids; "owner/model-v1.5" is one."""
    if path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES) or not looks_like_hub_id(source):
        raise ModelLoadError(f"{source}: no such model file or folder")
