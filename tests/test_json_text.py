"""JSON from other people's files: nesting past the parser is damaged JSON (a ValueError), not a RecursionError."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowdim import json_text

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_reads_what_json_reads(value):
    text = json.dumps(value)
    assert json_text.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000])
def test_text_nested_past_the_parser_is_a_value_error(text):
    with pytest.raises(ValueError, match="nested too deeply"):
        json_text.loads(text)


def test_damaged_json_is_still_json_s_own_error():
    with pytest.raises(json.JSONDecodeError):
        json_text.loads("{not json")


@pytest.mark.parametrize("depth", [json_text.MAX_NESTING + 1, 900])
def test_text_nested_past_the_bound_is_refused_before_any_walker_recurses(depth):
    bound = json_text.MAX_NESTING
    with pytest.raises(json_text.NestedTooDeeply, match=rf"nested too deeply \(more than {bound} levels\)"):
        json_text.loads("[" * depth + "]" * depth)
    with pytest.raises(ValueError, match="nested"):
        json_text.loads('{"a":' * depth + "1" + "}" * depth)


def test_text_nested_to_the_bound_is_read():
    depth = json_text.MAX_NESTING
    text = '{"x":' * (depth - 1) + "[1]" + "}" * (depth - 1)
    assert json_text.loads(text) == json.loads(text)


def test_a_long_flat_list_is_read_quickly():
    text = json.dumps([[f"layer.{n}", 320, 768] for n in range(200_000)])
    assert len(json_text.loads(text)) == 200_000

# That the bound is far above what lowdim, diffusers and transformers write is measured on their real files in
# tests/sd/test_json_nesting_of_real_files.py.
