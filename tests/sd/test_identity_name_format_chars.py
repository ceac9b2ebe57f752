"""An identity name in a weight folder's index that holds an invisible Unicode format character is refused.

What users rely on: identity names are printed in progress lines and errors, and they key the rows of the shards;
a bidi override (U+202E) or a zero-width space (U+200B) makes one print as another name, so an index holding one is
refused in one line naming the identity escaped and the code point, as adapter layer names are
(``layer_name_problem``, with which the check is shared). Plain and non-Latin names still read.
"""

from __future__ import annotations

import json
import re

import pytest

from lowdim.errors import LowdimError
from lowdim.filecheck import layer_name_problem
from lowdim_sd.weight_index import FORMAT, FORMAT_VERSION, read_index


def folder_with(tmp_path, name: str):
    entry = {"name": name, "shard": "shard-00000.safetensors", "row": 0, "images": [f"{name}/a.png"]}
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "identities": [entry]}
    (tmp_path / "index.json").write_text(json.dumps(index))
    return tmp_path


@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\u2066", "\ufeff"], ids=lambda c: f"U+{ord(c):04X}")
def test_an_identity_name_with_a_format_character_is_refused_naming_the_code_point(tmp_path, char):
    name = f"person{char}_001"
    with pytest.raises(LowdimError, match=r"index\.json: identity " + re.escape(ascii(name))) as refused:
        read_index(folder_with(tmp_path, name))
    line = str(refused.value)
    assert f"U+{ord(char):04X}" in line and char not in line and "\n" not in line
    assert layer_name_problem(name) is not None and layer_name_problem(name).split(",")[0] in line  # one check


@pytest.mark.parametrize("name", ["person_001", "Zoë Ångström", "王小明", "Ολγα"])
def test_printable_names_still_read(tmp_path, name):
    assert [entry["name"] for entry in read_index(folder_with(tmp_path, name))["identities"]] == [name]


@pytest.mark.parametrize("name", ["Sara\u200cpour", "family\u200d"], ids=["ZWNJ", "ZWJ"])
def test_joiners_that_spell_real_names_still_read(tmp_path, name):
    assert [entry["name"] for entry in read_index(folder_with(tmp_path, name))["identities"]] == [name]


def photos_named(tmp_path, name: str, flat: bool):
    from PIL import Image

    photos = tmp_path / "photos"
    where = photos if flat else photos / name
    where.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(where / (f"{name}.png" if flat else "a.png"))
    return photos


@pytest.mark.parametrize("flat", [False, True], ids=["sub-folder", "flat image"])
@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\x1b"], ids=lambda c: f"U+{ord(c):04X}")
def test_precompute_refuses_such_a_name_before_any_training(tmp_path, char, flat):
    """A folder named so used to run a whole precompute into an index that no later read accepts."""
    from lowdim_sd.precompute import discover_identities

    name = f"person{char}x"
    with pytest.raises(LowdimError, match="an identity's name holds") as refused:
        discover_identities(photos_named(tmp_path, name, flat))
    assert ascii(name)[1:-1] in str(refused.value) and char not in str(refused.value)


@pytest.mark.parametrize("flat", [False, True], ids=["sub-folder", "flat image"])
def test_precompute_takes_a_name_spelt_with_a_joiner(tmp_path, flat):
    from lowdim_sd.precompute import discover_identities

    name = "Sara\u200cpour"
    assert [who.name for who in discover_identities(photos_named(tmp_path, name, flat))] == [name]
