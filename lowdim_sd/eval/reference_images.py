"""The reference photos an eval compares its images with: a folder of them read as personalize reads one, and
each file opened (and, with ``crop``, cropped to the face) once, however many images share it. Used by
``folder.load_eval_set``; an unusable reference the user named is its ``EvalFolderError``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from lowdim_sd.eval.image_files import MAX_SIDE, read_image, warn_skipped
from lowdim_sd.faces import CROP_MAX_SIDE
from lowdim_sd.images import IMAGE_EXTENSIONS, ImageError, collect_images

IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))  # what personalize reads from a folder, too
# The face notes of --crop say what eval can do: it has no --face-index, and it goes on uncropped by itself.
_SEVERAL_FACES_HINT = "; to use another, cut the photo down to that face"


def pictures_in(folder: Path) -> list[Path]:
    """The image files in ``folder`` (sorted, non-recursive) as personalize reads a folder: by extension, hidden
    files left out (a Mac's ._NAME.jpg beside each photo copied to a foreign disk is not a picture).

    Without collect_images' notes: eval's own folder holds prompts.json and its results, and an empty folder is
    the caller's to judge.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return collect_images(folder)
        except ImageError:  # no image in it
            return []


def expand_folders(paths: Sequence[Path]) -> list[Path]:
    """Reference paths with folders replaced by the image files in them (see ``pictures_in``)."""
    out: list[Path] = []
    for path in paths:
        out.extend(pictures_in(path) if path.is_dir() else [path])
    return out


class ReferenceImages:
    """Each reference file opened (and cropped) once, however many samples share it."""

    def __init__(self, crop: bool, size: int, margin: float) -> None:
        self.crop, self.size, self.margin = crop, size, margin
        self._cache: dict[Path, Image.Image | None] = {}
        # Cropped, a reference is read as personalize reads it, up to the crop's resolution: a face that is
        # large enough in the file is not made small (and its crop soft) by the metrics' smaller size limit.
        self._max_side = CROP_MAX_SIDE if crop else MAX_SIDE

    def load(self, paths: Sequence[Path]) -> tuple[Image.Image, ...]:
        images: list[Image.Image] = []
        for path in expand_folders(paths):
            if path not in self._cache:
                self._cache[path] = self._open(path)
            image = self._cache[path]
            if image is not None:
                images.append(image)
        return tuple(images)

    def opened(self) -> list[Path]:
        return list(self._cache)

    def require(self, paths: Sequence[Path]) -> None:
        """Open references the user named: one that can't be used is an error naming it, not misses."""
        from lowdim_sd.eval.folder import EvalFolderError  # folder imports this module: its error, when raised

        for path in paths:
            if path.is_dir() and not expand_folders([path]):
                raise EvalFolderError(f"reference folder {path} (--references) holds no images "
                                      f"({', '.join(IMAGE_SUFFIXES)})")
        for path in expand_folders(paths):
            if path not in self._cache:
                self._cache[path] = self._open(path, strict=True)

    def _open(self, path: Path, strict: bool = False) -> Image.Image | None:
        image = read_image(path, "reference", self._max_side)
        if isinstance(image, str):
            if strict:
                from lowdim_sd.eval.folder import EvalFolderError

                raise EvalFolderError(f"reference {path} (--references): {image}")
            warn_skipped(path, "reference", image)
            return None
        if not self.crop:
            return image
        from lowdim_sd.faces import FaceNotFound, NoFaceWarning, crop_face

        try:
            cropped = crop_face(image, size=self.size, margin=self.margin, name=str(path),
                                several_faces_hint=_SEVERAL_FACES_HINT, no_face_hint="")
        except FaceNotFound as error:
            warnings.warn(NoFaceWarning(f"{error}; using reference {path} uncropped"), stacklevel=2)
            return image
        cropped.info["source"] = str(path)
        return cropped
