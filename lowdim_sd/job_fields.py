"""Job fields that take what a caller has and hold what a run uses: a str path held as a Path, one seed as a list.

A ``Converted`` is a dataclass field's class-level value that converts every value set, by ``__init__`` or after
it (a frozen job's ``__init__`` too: it sets fields through ``object.__setattr__``, which calls ``__set__``). Type
checkers read its two sides apart, as the typing spec has descriptor-typed dataclass fields and mypy and pyright
both do: the ``__init__`` parameter takes ``__set__``'s value type, the attribute reads as ``__get__``'s. So
``TrainJob(model, out="runs/me").out / "adapter.safetensors"`` checks, where a field typed as what it takes
(``str | PathLike``) would refuse the ``/``.

A job class is made with ``job_dataclass`` (``dataclasses.dataclass`` at run time) so that a field left without
``default=`` stays required to the checkers: to them a plain dataclass field with any value in the class body has
a default, and mypy reads a descriptor only from such a value. ``job_dataclass`` names this module's field makers
as field specifiers (PEP 681), whose ``default=`` alone says whether a field has one. At run time a field without
a default has no class-level value (reading it from the class raises AttributeError), so the dataclass makes it
required too. The field makers take keywords only, as ``dataclasses.field`` does: mypy reads no positional ones.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar, cast, overload

from lowdim_sd.train_settings import as_path

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # torch's own dependency
    from typing_extensions import dataclass_transform

PathArg: TypeAlias = str | os.PathLike[str]  # what a path field takes
Given = TypeVar("Given")
Held = TypeVar("Held")
Job = TypeVar("Job")
REQUIRED: Any = dataclasses.MISSING  # a field's default when the caller must give it


class Converted(Generic[Given, Held]):
    """A dataclass field taking ``Given`` and holding ``convert(value, owner, name)``: ``owner`` is the job's class
    name and ``name`` the field's, for the line that refuses a value."""

    def __init__(self, *, convert: Callable[[Any, str, str], Held], default: Given = REQUIRED) -> None:
        self.convert = convert
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, job: None, owner: type | None = None) -> Given: ...  # the class's: the dataclass default

    @overload
    def __get__(self, job: object, owner: type | None = None) -> Held: ...

    def __get__(self, job: object | None, owner: type | None = None) -> Given | Held:
        if job is None:
            if self.default is REQUIRED:  # no class-level value: the dataclass makes the field required
                raise AttributeError(self.name)
            return self.default
        try:
            return cast(Held, job.__dict__[self.name])
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, job: object, value: Given) -> None:
        # Under the field's own name in the instance's __dict__: copy, pickle and vars() see a plain field.
        job.__dict__[self.name] = self.convert(value, type(job).__name__, self.name)


# The fields' types, as a job declares them: ``out: PathField = path_field(default=Path("out"))``.
PathField: TypeAlias = Converted[PathArg, Path]
OptionalPathField: TypeAlias = Converted[PathArg | None, Path | None]
PathsField: TypeAlias = Converted[PathArg | Iterable[PathArg], list[Path]]  # one path alone, or several
SeedsField: TypeAlias = Converted[int | Sequence[int], list[int]]  # one seed alone, or several
WordsField: TypeAlias = Converted[str | Sequence[str], list[str]]  # one word alone, or several


def optional_path(value: object, owner: str, name: str) -> Path | None:
    return None if value is None else as_path(value, owner, name)


@overload
def path_field(*, default: None) -> OptionalPathField: ...


@overload
def path_field(*, default: PathArg = REQUIRED) -> PathField: ...


def path_field(*, default: PathArg | None = REQUIRED) -> PathField | OptionalPathField:
    """A path; with ``default=None`` one that may be left out (None)."""
    if default is None:
        optional: OptionalPathField = Converted(convert=optional_path, default=None)
        return optional
    return Converted(convert=as_path, default=default)


def as_paths(value: object, owner: str, name: str) -> list[Path]:
    """Paths from one path (a file or folder, not its characters one by one) or from several."""
    if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, Iterable):
        return [as_path(value, owner, name)]  # a number, bytes: refused by as_path, by its type
    return [as_path(item, owner, name) for item in value]


def paths_field(*, default: Sequence[PathArg] = REQUIRED) -> PathsField:
    return Converted(convert=as_paths, default=default)


def as_seeds(value: object, owner: str, name: str) -> list[int]:
    """One seed given bare is one seed; any other sequence (a tuple, a range) is copied into a list. What is neither
    is left as it is, for the check of the config that names it (``generate.check_config``)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)]
    return list(value) if isinstance(value, Sequence) else cast(list[int], value)


def seeds_field(*, default: Sequence[int] = REQUIRED) -> SeedsField:
    return Converted(convert=as_seeds, default=default)


def as_words(value: object, owner: str, name: str) -> list[str]:
    """One word given bare is one, not its letters one by one; any other sequence is copied into a list. What is
    neither is left as it is, for the job's checks that name it."""
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, Sequence) else cast(list[str], value)


def words_field(*, default: Sequence[str] = REQUIRED) -> WordsField:
    return Converted(convert=as_words, default=default)


@overload
def job_dataclass(cls: type[Job], /) -> type[Job]: ...


@overload
def job_dataclass(*, frozen: bool = False) -> Callable[[type[Job]], type[Job]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, Converted, path_field, paths_field, seeds_field,
                                       words_field))
def job_dataclass(cls: type[Job] | None = None, /, *, frozen: bool = False) -> Any:
    """``dataclasses.dataclass``, as checkers must read a class with ``Converted`` fields (the module's note)."""
    if cls is None:
        return lambda given: _shown_as_taken(dataclasses.dataclass(frozen=frozen)(given))
    return _shown_as_taken(dataclasses.dataclass(cls))


# What each field type takes, as help() and inspect.signature show the job's __init__: a user reads there what
# to pass, and "PathField" names nothing they know (checkers read the source, not these).
TAKES = {"PathField": "str | os.PathLike[str]", "OptionalPathField": "str | os.PathLike[str] | None",
         "PathsField": "str | os.PathLike[str] | Iterable[str | os.PathLike[str]]",
         "SeedsField": "int | Sequence[int]", "WordsField": "str | Sequence[str]",
         "Folders": "str | os.PathLike[str] | Sequence[str | os.PathLike[str]]"}  # weight_dataset's alias


def _shown_as_taken(cls: type[Job]) -> type[Job]:
    shown = cls.__init__.__annotations__  # a dataclass's own __init__
    for name, annotation in list(shown.items()):
        shown[name] = TAKES.get(annotation, annotation) if isinstance(annotation, str) else annotation
    return cls
