"""The adapters a command is given (``-a FILE[:SCALE]`` repeated), checked as a list before any model loads."""

from __future__ import annotations

import warnings
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.paths import expand_user


def check_adapter_list(adapters: list[tuple[Path, float]]) -> None:
    """One file given twice is refused: it would act at the sum of its scales, and the warning about two adapters
    sharing a word would send the user to retrain one. A scale of 0 changes nothing: said, not refused (a sweep
    may include it)."""
    seen: dict[Path, Path] = {}
    for path, scale in adapters:
        key = expand_user(path).resolve()
        if key in seen:
            also = f" (also as {seen[key]})" if str(seen[key]) != str(path) else ""
            raise LowdimError(f"{path}: given twice{also}; it would act at the sum of the scales: give it once, with "
                              f"the scale you want ({path}:2.0 for twice the strength)")
        seen[key] = Path(path)
        if scale == 0:
            warnings.warn(f"{path}: at scale 0 it changes nothing; leave it out, or give it a scale", stacklevel=2)
