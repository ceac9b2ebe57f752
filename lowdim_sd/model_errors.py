"""``ModelLoadError``, the error of a model that could not be found or read, in a module of its own: ``loading``
imports ``model_names`` and ``ldm_checkpoint``, which raise it too, so living in ``loading`` it could only be
imported by them inside a function. ``loading`` re-exports it, and most callers import it from there."""

from __future__ import annotations

from lowdim.errors import LowdimError


class ModelLoadError(LowdimError):
    """The model could not be found or read."""
