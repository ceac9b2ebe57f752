"""The reference photos an eval compares its images with: a folder of them read as personalize reads one, the files
each image is compared with chosen (``ReferenceChoice``), and each file opened (and, with ``crop``, cropped to the
face) once, however many images share it. Used by ``folder.load_eval_set``; an unusable reference the user named is
its ``EvalFolderError``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image

from lowdim_sd.eval.image_files import MAX_SIDE, read_image, warn_skipped
from lowdim_sd.faces import CROP_MAX_SIDE
from lowdim_sd.images import IMAGE_EXTENSIONS, ImageError, collect_images

IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))  # what personalize reads from a folder, too
# The face notes of --crop say what eval can do: it has no --face-index, and it goes on uncropped by itself.
_SEVERAL_FACES_HINT = "; to use another, cut the photo down to that face"
# Written by `lowdim generate` beside its pictures and prompts.json: a collage of them, neither a picture it drew
# nor a photo of anyone.
GENERATE_GRID = "grid.png"


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


def real_path(path: Path) -> Path:
    """The file ``path`` names, links followed: ``a.png``, ``./a.png`` and a link to it are one file."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13): compare as written
        return Path(os.path.abspath(path))


def is_generate_grid(path: Path) -> bool:
    """Whether ``path`` is the grid.png ``lowdim generate`` wrote beside its pictures (and their prompts file)."""
    from lowdim_sd.eval.folder import PROMPT_FILES  # folder imports this module

    return path.name == GENERATE_GRID and any((path.parent / name).is_file() for name in PROMPT_FILES)


class ReferenceChoice:
    """The reference files each image is compared with: folders expanded (``expand_folders``), each file once
    by its real path, a generate folder's grid.png never, and never the image being scored itself (it would
    score 1 against itself). What it leaves out is said in ``notes()``, one line per kind."""

    def __init__(self, scored: Mapping[str, Path]) -> None:
        self._scored = {name: real_path(path) for name, path in scored.items()}  # image name -> its file
        self._chosen: dict[tuple[Path, ...], tuple[list[Path], list[Path]]] = {}  # paths given -> (files, grids)
        self._given: dict[Path, list[Path]] = {}  # a file given more than once -> each way it was given
        self._itself: list[tuple[str, Path]] = []  # (image, the reference that is that image)
        self._grids: dict[Path, None] = {}

    def files(self, paths: Sequence[Path]) -> list[Path]:
        """The files of ``paths``, each once, grids left out (the image scored is left out by ``for_image``)."""
        return self._files(tuple(paths))[0]

    def for_image(self, name: str, paths: Sequence[Path], where: str) -> list[Path]:
        """The files of ``paths`` image ``name`` is compared with; ``where`` says where the paths were given (for
        the refusal when nothing but the image itself, or a grid, is left)."""
        files, grids = self._files(tuple(paths))
        own = self._scored.get(name)
        kept = [path for path in files if real_path(path) != own]
        itself = [path for path in files if real_path(path) == own]
        self._itself += [(name, path) for path in itself]
        if (itself or grids) and not kept:
            from lowdim_sd.eval.folder import EvalFolderError  # folder imports this module: its error, when raised

            left = [*(f"{path}, the image itself" for path in itself), *(f"{path}, generate's grid" for path in grids)]
            why = [*(["a picture compared with itself scores 1"] if itself else []),
                   *(["a grid is a collage of generated pictures, no photo of the subject"] if grids else [])]
            raise EvalFolderError(f"the references of {name} ({where}) are only {'; '.join(left)}: "
                                  f"{' and '.join(why)}; give the photo(s) of the subject it should match")
        return kept

    def _files(self, paths: tuple[Path, ...]) -> tuple[list[Path], list[Path]]:
        """Each file of ``paths`` once (by real path, first as given), and the generate grids left out; worked out
        once per list, however many images share it, so each repeat is noted once."""
        if paths not in self._chosen:
            first: dict[Path, Path] = {}
            grids: list[Path] = []
            for path in expand_folders(paths):
                if is_generate_grid(path):
                    grids.append(path)
                    self._grids.setdefault(path)
                    continue
                key = real_path(path)
                if key in first:
                    self._given.setdefault(key, [first[key]]).append(path)
                else:
                    first[key] = path
            self._chosen[paths] = list(first.values()), grids
        return self._chosen[paths]

    def notes(self) -> list[str]:
        """One line for the references given more than once, one for those left out (images scored, grids)."""
        lines = []
        if self._given:
            ways = next(iter(self._given.values()))
            names = list(dict.fromkeys(map(str, ways)))
            shown = f" (as {', '.join(names)})" if len(names) > 1 else " (a folder gives each file in it)"
            many = "" if len(self._given) == 1 else f"{len(self._given)} files are given more than once, e.g. "
            lines.append(f"{many}{ways[0]} is given {len(ways)} times as a reference{shown}; each file counts once, "
                         f"as given twice it would weigh double in every mean")
        parts = []
        if self._itself:
            name, path = self._itself[0]
            parts.append(f"{len(self._itself)} reference(s) are the image scored itself (e.g. {path} for {name}): "
                         f"each is left out of its own image's references, as a picture scores 1 against itself")
        if self._grids:
            more = f" and {len(self._grids) - 1} more" if len(self._grids) > 1 else ""
            parts.append(f"generate's grid {next(iter(self._grids))}{more}, a collage of generated pictures, is "
                         f"left out of the references")
        return lines + (["; ".join(parts)] if parts else [])


class ReferenceImages:
    """Each reference file opened (and cropped) once, however many samples share it, by its real path."""

    def __init__(self, crop: bool, size: int, margin: float) -> None:
        self.crop, self.size, self.margin = crop, size, margin
        self._cache: dict[Path, tuple[Path, Image.Image | None]] = {}  # real path -> (first as given, opened)
        # Cropped, a reference is read as personalize reads it, up to the crop's resolution: a face that is
        # large enough in the file is not made small (and its crop soft) by the metrics' smaller size limit.
        self._max_side = CROP_MAX_SIDE if crop else MAX_SIDE

    def load(self, paths: Sequence[Path]) -> tuple[Image.Image, ...]:
        return tuple(image for _, image in self._opened(paths))

    def sources(self, paths: Sequence[Path]) -> tuple[str, ...]:
        """The real paths of those of ``paths`` opened so far that could be used (none is opened here)."""
        keys = [real_path(path) for path in expand_folders(paths)]
        return tuple(str(key) for key in keys if key in self._cache and self._cache[key][1] is not None)

    def _opened(self, paths: Sequence[Path]) -> list[tuple[Path, Image.Image]]:
        out: list[tuple[Path, Image.Image]] = []
        for path in expand_folders(paths):
            key = real_path(path)
            if key not in self._cache:
                self._cache[key] = path, self._open(path)
            image = self._cache[key][1]
            if image is not None:
                out.append((key, image))
        return out

    def opened(self) -> list[Path]:
        """Every reference opened (or tried), as first given."""
        return [given for given, _ in self._cache.values()]

    def require(self, paths: Sequence[Path]) -> None:
        """Open references the user named: one that can't be used is an error naming it, not misses."""
        from lowdim_sd.eval.folder import EvalFolderError  # folder imports this module: its error, when raised

        for path in paths:
            if path.is_dir() and not expand_folders([path]):
                raise EvalFolderError(f"reference folder {path} (--references) holds no images "
                                      f"({', '.join(IMAGE_SUFFIXES)})")
        for path in expand_folders(paths):
            key = real_path(path)
            if key not in self._cache and not is_generate_grid(path):  # a grid is left out, never opened
                self._cache[key] = path, self._open(path, strict=True)

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
