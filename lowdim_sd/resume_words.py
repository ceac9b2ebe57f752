"""The shapes of the lines a refused resume or rerun prints for each setting it recorded otherwise, shared by the
commands that name them by flag (``lowdim train``: ``train_job_words``, ``lowdim train-hypernet``:
``hypertrain_resume``, ``lowdim precompute``: ``precompute_header``), so the three read alike: every difference in
one line (``listed``), each option the user changed once, not the rate that followed it (``rate_followed``)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

from lowdim.scoped import scoped

AT_MOST = 8  # differences a refusal names; past them, the count of the rest: a line still read to its end


def listed(lines: Sequence[str]) -> str:
    """A refusal's differences in one line, ``; `` between them: every one, so one rerun fixes them all, up to
    AT_MOST; past it, how many more (``...; and 3 more``)."""
    rest = len(lines) - AT_MOST
    return "; ".join(lines[:AT_MOST]) + (f"; and {rest} more" if rest > 0 else "")


# Whether the user typed --lr: True or False under a training command (``rate_typed``), None where nobody said.
_RATE_TYPED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("lowdim_rate_typed", default=None)


@contextlib.contextmanager
def rate_typed(typed: bool) -> Iterator[None]:
    """The CLI runs ``train`` and ``precompute`` inside this, saying whether --lr was typed: a refusal then tells a
    rate the user gave from their mode's default (``rate_followed``), which no value can tell (an --lr typed at the
    other mode's default is still typed)."""
    with scoped(_RATE_TYPED, typed):
        yield


def rate_followed(there: object, mode_there: object) -> bool:
    """Whether a rate recorded otherwise only follows another difference, and is no change of its own: no --lr was
    typed now (this run's rate is its mode's default, ``lowdim_sd.defaults.learning_rate``), and the rate ``there``
    was the default of its own mode (``mode_there``: ``full``, ``relaxed`` or the space), so going back to that
    mode gives that rate again. Where nobody said whether --lr was typed, the rate is named."""
    from lowdim.errors import LowdimError
    from lowdim_sd import defaults

    if _RATE_TYPED.get() is not False or not isinstance(mode_there, str):
        return False
    try:
        return there == defaults.learning_rate(mode_there)
    except LowdimError:  # a space whose declared rate is broken now: no default to say it followed
        return False


# How a line names its two sides: a resume's checkpoint or index (there) and this run (now); two weight folders
# compared say each by its folder instead (``in w1``, ``in w2``: precompute_header.Sides).
THERE_NOW = ("there", "now")


def switched(words: tuple[str, str], there: object, now: object, sides: tuple[str, str] = THERE_NOW) -> str:
    """An on/off setting as the command line says each side: ``--augment there, --no-augment now``; ``words``:
    (on, off)."""
    on, off = words
    return f"{on if there else off} {sides[0]}, {on if now else off} {sides[1]}"


def changed(name: str, there: object, now: object, sides: tuple[str, str] = THERE_NOW) -> str:
    """``--lr (0.002 there, 0.01 now)``."""
    return f"{name} ({shown(there)} {sides[0]}, {shown(now)} {sides[1]})"


def worded_change(named: str, there: object, now: object) -> str:
    """``changed`` for the reader at hand: on the command line as typed (``--space (lidb there, lora now)``), from
    Python with a str as its repr (``TrainJob(space=...) ('lidb' there, 'lora' now)``), as the field takes it."""
    from lowdim.option_words import on_the_command_line

    if on_the_command_line():
        return changed(named, there, now)
    old, new = (repr(value) if isinstance(value, str) else shown(value) for value in (there, now))
    return f"{named} ({old} there, {new} now)"


def worded_switch(named: str, words: tuple[str, str], there: object, now: object) -> str:
    """``switched`` for the reader at hand: ``--augment there, --no-augment now`` (``words``: on, off) on the
    command line, ``TrainConfig(augment=...) (on there, off now)`` from Python (``named``: the field)."""
    from lowdim.option_words import on_the_command_line

    if on_the_command_line():
        return switched(words, there, now)
    return f"{named} ({'on' if there else 'off'} there, {'on' if now else 'off'} now)"


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
