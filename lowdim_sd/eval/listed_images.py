"""What is wrong, if anything, with the list of images a prompts file gives: the checks that need no image opened."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePath


def listing_problem(path: Path, images: Sequence[str], positions: Sequence[str]) -> str | None:
    """The first problem with ``images`` as the prompts file ``path`` lists them (``positions``: each one's place
    in it, "image entry 3" or "line 4"), as one line naming the entry; None when there is none."""
    return _outside(path, images, positions) or _listed_twice(path, images, positions)


def _outside(path: Path, images: Sequence[str], positions: Sequence[str]) -> str | None:
    """The images a prompts file lists are the folder's own: an absolute path or one climbing out of the folder
    would have eval score (and name in its notes) any file on the disk as a generated picture. ``sub/../a.png``
    stays inside, and is read. References may be anywhere (docs/eval.md)."""
    for image, position in zip(images, positions, strict=True):
        if PurePath(image).is_absolute() or PurePath(os.path.normpath(image)).parts[:1] == ("..",):
            return (f"{path}: {position} ({image}) is outside {path.parent}; an eval folder lists only its own "
                    f"images, by their path inside it")
    return None


def _listed_twice(path: Path, images: Sequence[str], positions: Sequence[str]) -> str | None:
    """An image listed twice would be scored twice, silently weighting it double in every mean."""
    first: dict[str, int] = {}
    for index, image in enumerate(images):
        earlier = first.setdefault(os.path.normpath(image), index)
        if earlier != index:
            return (f"{path}: {images[earlier]} is listed twice, as {positions[earlier]} and {positions[index]}; "
                    f"list each image once")
    return None
