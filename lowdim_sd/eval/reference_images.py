"""The reference photos an eval compares its images with: a folder of them read as personalize reads one, the files
each image is compared with chosen (``ReferenceChoice``), and each file opened (and, with ``crop``, cropped to the
face) once, however many images share it. Used by ``folder.load_eval_set``; an unusable reference the user named is
its ``EvalFolderError``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from lowdim.option_words import Wording, counted
from lowdim_sd.eval.image_files import MAX_SIDE, read_image, warn_skipped
from lowdim_sd.eval.prompts_file import PROMPT_FILES, EvalFolderError
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
    return path.name == GENERATE_GRID and any((path.parent / name).is_file() for name in PROMPT_FILES)


class Reference(NamedTuple):
    """A reference file as given (what notes, errors and a crop's ``source`` name) and its real path (what tells two
    files apart), worked out once: an eval of many images sharing many references resolves each file once."""

    given: Path
    key: Path


class ReferenceChoice:
    """The reference files each image is compared with: folders expanded (``expand_folders``), each file once
    by its real path, a generate folder's grid.png never, and never one of the generated pictures being scored
    (an image would score 1 against itself, and the others are generated too: no photo of the subject). What it
    leaves out is said in ``notes()``, one line per kind."""

    def __init__(self, scored: Mapping[str, Path]) -> None:
        self._scored = {real_path(path) for path in scored.values()}  # the files of the images being scored
        self._chosen: dict[tuple[Path, ...], tuple[list[Reference], list[Reference], list[Path]]] = {}
        self._given: dict[Path, list[Path]] = {}  # a file given more than once -> each way it was given
        self._generated: dict[Path, Path] = {}  # a scored picture given as a reference -> first as given
        self._grids: dict[Path, None] = {}

    def files(self, paths: Sequence[Path]) -> list[Reference]:
        """The files of ``paths``, each once, grids and the pictures being scored left out."""
        return self._files(tuple(paths))[0]

    def for_image(self, name: str, paths: Sequence[Path], where: str) -> list[Reference]:
        """The files of ``paths`` image ``name`` is compared with; ``where`` says where the paths were given (for
        the refusal when nothing but generated pictures, or a grid, is left)."""
        kept, generated, grids = self._files(tuple(paths))
        if (generated or grids) and not kept:
            raise EvalFolderError(f"the references of {name} ({where}) are only {_left_out(generated, grids)}: "
                                  f"generated pictures are no photo of the subject (and a picture scores 1 against "
                                  f"itself); give the photo(s) of the subject it should match")
        return kept

    def _files(self, paths: tuple[Path, ...]) -> tuple[list[Reference], list[Reference], list[Path]]:
        """(files kept, pictures being scored, generate grids) of ``paths``, each file once (by real path, first as
        given); worked out once per list, however many images share it, so each repeat is noted once."""
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
            chosen = [Reference(given, key) for key, given in first.items()]
            generated = [reference for reference in chosen if reference.key in self._scored]
            for reference in generated:
                self._generated.setdefault(reference.key, reference.given)
            kept = [reference for reference in chosen if reference.key not in self._scored]
            self._chosen[paths] = kept, generated, grids
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
        if self._generated:
            are = "is a generated picture" if len(self._generated) == 1 else "are generated pictures"
            parts.append(f"{counted(len(self._generated), 'reference')} {are} being scored (e.g. "
                         f"{next(iter(self._generated.values()))}): left out of every image's references, as a "
                         f"generated picture is no photo of the subject (and a picture scores 1 against itself)")
        if self._grids:
            more = f" and {len(self._grids) - 1} more" if len(self._grids) > 1 else ""
            parts.append(f"generate's grid {next(iter(self._grids))}{more}, a collage of generated pictures, is "
                         f"left out of the references")
        return lines + (["; ".join(parts)] if parts else [])


# Where the references came from, in the words of the reader at hand (docs/eval.md: Python callers get the field).
_GIVEN_AS = Wording("--references", "EvalJob(references=...)")
SHOWN_LEFT_OUT = 3  # references a refusal names; the rest are counted


def _left_out(generated: list[Reference], grids: list[Path]) -> str:
    """What a refused image's references were, as the refusal names them: a few, then how many more."""
    named = [str(reference.given) for reference in generated[:SHOWN_LEFT_OUT]]
    more = f" and {len(generated) - SHOWN_LEFT_OUT} more" if len(generated) > SHOWN_LEFT_OUT else ""
    said = [f"generated pictures being scored ({', '.join(named)}{more})"] if generated else []
    said += [f"generate's grid {grid}" for grid in grids]
    return " and ".join(said)


class ReferenceImages:
    """Each reference file opened (and cropped) once, however many samples share it, by its real path."""

    def __init__(self, crop: bool, size: int, margin: float) -> None:
        self.crop, self.size, self.margin = crop, size, margin
        self._cache: dict[Path, tuple[Path, Image.Image | None]] = {}  # real path -> (first as given, opened)
        # Cropped, a reference is read as personalize reads it, up to the crop's resolution: a face that is
        # large enough in the file is not made small (and its crop soft) by the metrics' smaller size limit.
        self._max_side = CROP_MAX_SIDE if crop else MAX_SIDE

    def load(self, references: Sequence[Reference]) -> tuple[Image.Image, ...]:
        """The images of ``references`` (as ``ReferenceChoice`` chose them) that could be used, each opened once."""
        return tuple(image for _, image in self._opened(references))

    def sources(self, references: Sequence[Reference]) -> tuple[str, ...]:
        """The real paths of those of ``references`` opened so far that could be used (none is opened here)."""
        return tuple(str(key) for _, key in references if key in self._cache and self._cache[key][1] is not None)

    def _opened(self, references: Sequence[Reference]) -> list[tuple[Path, Image.Image]]:
        out: list[tuple[Path, Image.Image]] = []
        for given, key in references:
            if key not in self._cache:
                self._cache[key] = given, self._open(given)
            image = self._cache[key][1]
            if image is not None:
                out.append((key, image))
        return out

    def opened(self) -> list[Path]:
        """Every reference opened (or tried), as first given."""
        return [given for given, _ in self._cache.values()]

    def require(self, paths: Sequence[Path]) -> None:
        """Open references the user named: one that can't be used is an error naming it, not misses."""
        for path in paths:
            if path.is_dir() and not expand_folders([path]):
                raise EvalFolderError(f"reference folder {path} ({_GIVEN_AS}) holds no images "
                                      f"({', '.join(IMAGE_SUFFIXES)})")
        for path in expand_folders(paths):
            key = real_path(path)
            if key not in self._cache and not is_generate_grid(path):  # a grid is left out, never opened
                self._cache[key] = path, self._open(path, strict=True)

    def _open(self, path: Path, strict: bool = False) -> Image.Image | None:
        image = read_image(path, "reference", self._max_side)
        if isinstance(image, str):
            if strict:
                raise EvalFolderError(f"reference {path} ({_GIVEN_AS}): {image}")
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
