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
