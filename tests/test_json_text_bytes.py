"""``json_text.loads`` takes bytes as ``json.loads`` does (review BS18): bytes are held to the same nesting bound as
text, whichever containers nest, so a reader handed a file's raw bytes gets the same refusal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowdim import json_text

BOUND = json_text.MAX_NESTING


def nested(kinds: list[str]) -> str:
    """JSON nesting one container per entry of ``kinds`` ("list" or "dict"), outermost first."""
    opening = "".join("[" if kind == "list" else '{"a":' for kind in kinds)
    return opening + "1" + "".join("]" if kind == "list" else "}" for kind in reversed(kinds))


@pytest.mark.parametrize("kinds", [["dict"] * (BOUND + 1), ["dict"] * 150, ["dict", "list"] * 51],
                         ids=["dicts-just-past", "dicts-150", "mixed-102"])
def test_bytes_nested_past_the_bound_are_refused_as_text_is(kinds):
    with pytest.raises(json_text.NestedTooDeeply, match=rf"more than {BOUND} levels"):
        json_text.loads(nested(kinds).encode())


@given(st.lists(st.sampled_from(["list", "dict"]), min_size=BOUND - 3, max_size=BOUND + 3))
def test_bytes_and_the_same_text_get_the_same_answer(kinds):
    text = nested(kinds)
    if len(kinds) > BOUND:
        for given in (text, text.encode()):
            with pytest.raises(json_text.NestedTooDeeply):
                json_text.loads(given)
    else:
        assert json_text.loads(text.encode()) == json_text.loads(text)
