"""Reference photos for ``lowdim personalize`` and ``lowdim precompute``: the face cropped out, or the image as is.

Both commands take ``--crop/--no-crop``, ``--crop-margin`` and ``--face-index``. Left unset, ``--crop``
follows the model's backend (``SDBackend.crops_faces``: True for sd15 and for unregistered models,
False for TinyFaces, whose 32x32 cartoons a face detector can't read). The crop needs the ``faces``
extra: asked for explicitly without it, that is an error; by default, a warning and the image is used
as it is, so a plain install keeps working.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import Tensor

from lowdim.option_words import either
from lowdim_sd.face_models import INSTALL_HINT, FacesUnavailable, faces_available
from lowdim_sd.faces import DEFAULT_MARGIN, FaceWarning, FoundFaces
from lowdim_sd.images import PathLike, load_image, open_rgb, pil_to_tensor

NO_EXTRA = "install lowdim[faces] to crop faces; using the image as it is"


def backend_crops(model_name: str) -> bool:
    """The default of ``--crop`` for ``model_name``: its backend's ``crops_faces``; True for a path or hub id."""
    from lowdim_sd.registered_models import registered_entry

    entry = registered_entry(model_name)
    # An unregistered model is most likely an SD1.5 finetune fed real photos: cropping is what it expects.
    return bool(getattr(entry.value, "crops_faces", True)) if entry else True


def resolve_crop(crop: bool | None, model_name: str) -> bool:
    """Whether to crop: ``crop`` when given, else the backend's default, downgraded (with one warning)
    to False when the ``faces`` extra is missing. An explicit ``crop=True`` without it is an error,
    raised here so a run fails before it loads a model.
    """
    if crop is False:
        return False
    if crop is None and not backend_crops(model_name):
        return False
    if faces_available():
        return True
    if crop:
        raise FacesUnavailable(f"{either('--crop', 'crop=True')} needs face detection, which is not installed; "
                               f"{INSTALL_HINT} (or pass {either('--no-crop', 'crop=False')})")
    warnings.warn(FaceWarning(NO_EXTRA), stacklevel=2)
    return False


def load_face_image(path: PathLike, resolution: int, crop: bool | None = None, margin: float = DEFAULT_MARGIN,
                    index: int | None = None, model_name: str = "", found: FoundFaces | None = None) -> Tensor:
    """One reference picture as a (3, resolution, resolution) float32 tensor in [-1, 1].

    Cropped: the file is opened like ``load_image`` (upright by EXIF, RGB, transparency over white),
    then the face is found, aligned and cut out at ``resolution`` (``faces.crop_face``; no face is a
    ``FaceNotFound`` naming the file). Not cropped: ``load_image`` (center square, resized).
    ``crop=None`` resolves it with ``resolve_crop`` for ``model_name``; jobs that load many images
    resolve once and pass the bool, so the missing-extra warning is printed once. ``found``: what
    ``faces.find_faces`` found in the file (a check before the run decoded it), cropped instead of decoding it again.
    """
    if crop is None:
        crop = resolve_crop(None, model_name)
    if not crop:
        return load_image(path, resolution)
    from lowdim_sd.faces import crop_face, job_hints

    path = Path(path)
    picture, faces = (open_rgb(path), None) if found is None else (found.picture, found.faces)
    return pil_to_tensor(crop_face(picture, size=resolution, margin=margin, index=index, name=str(path), found=faces,
                                   **job_hints()))


def crop_settings(crop: bool, margin: float, index: int | None) -> dict:
    """What decides the pixels a model trains on, as recorded in a weight index (None where unused)."""
    return {"crop": crop, "crop_margin": margin if crop else None, "face_index": index if crop else None}
