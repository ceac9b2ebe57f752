"""The adapters a command is given (``-a FILE[:SCALE]`` repeated), checked as a list before any model loads."""

from __future__ import annotations

import warnings
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.paths import expand_user


def check_adapter_list(adapters: list[tuple[Path, float]], command: str = "generate") -> None:
    """One file given twice is refused: it would act at the sum of its scales, and the warning about two adapters
    sharing a word would send the user to retrain one. A scale of 0 changes nothing: said, not refused (a sweep
    may include it)."""
    seen: dict[Path, Path] = {}
    for path, scale in adapters:
        key = expand_user(path).resolve()
        if key in seen:
            raise _given_twice(path, seen[key], [s for p, s in adapters if expand_user(p).resolve() == key], command)
        seen[key] = Path(path)
        if scale == 0:
            warnings.warn(f"{path}: at scale 0 it changes nothing; leave it out, or give it a scale", stacklevel=2)


def _given_twice(path: Path, first: Path, scales: list[float], command: str) -> LowdimError:
    """The sum it would act at, and the way to compare scales: twice is most often a sweep meant as columns, which
    a call cannot draw (one scale per adapter)."""
    also = f" (also as {first})" if str(first) != str(path) else ""
    given = ", ".join(f"{s:g}" for s in scales[:-1]) + f" and {scales[-1]:g}"
    draws = "personalize " + " ".join(f"--preview-draw {s:g}" for s in scales)
    times = "twice" if len(scales) == 2 else f"{len(scales)} times"
    return LowdimError(f"{path}: given {times}{also}, at {given}; it would act at the sum of the scales: "
                       f"give it once ({path}:{sum(scales):g} for that sum); to compare scales, run {command} once per "
                       f"scale, each with its own -o ({draws} draws a new adapter's preview at each)")
