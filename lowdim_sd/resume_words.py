"""The shapes of the lines a refused resume or rerun prints for each setting it recorded otherwise, shared by the
commands that name them by flag (``lowdim train``: ``train_job_words``, ``lowdim train-hypernet``:
``hypertrain_resume``, ``lowdim precompute``: ``precompute_header``), so the three read alike."""

from __future__ import annotations

from collections.abc import Iterator


def switched(words: tuple[str, str], there: object, now: object) -> str:
    """An on/off setting as the command line says each side: ``--augment there, --no-augment now``; ``words``:
    (on, off)."""
    on, off = words
    return f"{on if there else off} there, {on if now else off} now"


def changed(name: str, there: object, now: object) -> str:
    """``--lr (0.002 there, 0.01 now)``."""
    return f"{name} ({shown(there)} there, {shown(now)} now)"


def shown(value: object) -> str:
    """A recorded value as the user would type it: a list's items, not Python's brackets and quotes; "not set"
    for a side that left it out."""
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "not set" if value is None else str(value) or "none"


def leaves(path: tuple, there: object, now: object) -> Iterator[tuple[tuple, object, object]]:
    """Each (path, there, now) where two nested values differ, by dict keys and list positions: one option each
    (``--set rank``), not two whole dicts to compare by eye."""
    if isinstance(there, dict) and isinstance(now, dict):
        for key in sorted(set(there) | set(now)):
            yield from leaves((*path, key), there.get(key), now.get(key))
    elif isinstance(there, list) and isinstance(now, list) and len(there) == len(now):
        for index, (old, new) in enumerate(zip(there, now, strict=True)):
            yield from leaves((*path, index), old, new)
    elif there != now:
        yield path, there, now
