"""lowdim.paths.is_plain_name: a name read from a file (state.json's outputs, a weight index's shard, a hypernet's
weight folders) names a file right in one folder, never a path out of it; lowdim.paths.named gives '.' and '..' the
name of the folder they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowdim.paths import is_plain_name, named

# Path parts that are no file name on their own, and characters of ordinary ones
SPECIAL = st.sampled_from(["", ".", ".."])
PART = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=12)


@given(PART)
def test_a_name_without_a_separator_is_plain_unless_it_is_dot_or_dot_dot(name: str) -> None:
    assert is_plain_name(name) == (name not in (".", ".."))


@given(st.lists(st.one_of(PART, SPECIAL), min_size=2, max_size=4), st.booleans())
def test_a_name_with_a_separator_or_a_root_is_never_plain(parts: list[str], absolute: bool) -> None:
    name = ("/" if absolute else "") + "/".join(parts)  # 'a/' and './a' too: they only look like a name
    assert not is_plain_name(name), name


@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(PART, max_size=1)))
def test_only_a_str_is_a_name(value: object) -> None:
    assert not is_plain_name(value)


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_the_folder_itself_and_its_parent_are_no_file_names(name: str) -> None:
    assert not is_plain_name(name)


@pytest.mark.parametrize("typed", [".", "..", "./", "../.."])
def test_dot_and_dot_dot_are_named_as_the_folder_they_are(typed: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    inside = tmp_path / "run" / "checkpoints" / "deep"
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)
    got = named(Path(typed))
    assert got == Path(os.path.abspath(typed)) and got.name and got.resolve() == Path(typed).resolve()


@given(st.lists(PART.filter(lambda part: part not in (".", "..")), min_size=1, max_size=3), st.booleans())
def test_a_path_with_a_name_is_kept_as_given(parts: list[str], absolute: bool) -> None:
    path = Path(("/" if absolute else "") + "/".join(parts))
    assert named(path) is path
