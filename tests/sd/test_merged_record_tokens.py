"""The words a merged model's record says it was taught are read as words: from someone else's merge, a value
that is not printable text (an escape sequence, a number, a megabyte of text) is left out, not carried into
generate's warnings and prompts."""

from __future__ import annotations

import json

from lowdim_sd.merged_model import RECORD
from lowdim_sd.taught_tokens import merged_tokens


def test_only_printable_words_of_a_sane_length_are_taken(tmp_path):
    record = {"base_model": "x", "adapters": [], "tokens": ["ohwx", "sk\x1b[31ms", 5, "", "y" * 5000, "zz"]}
    (tmp_path / RECORD).write_text(json.dumps(record))
    assert merged_tokens(str(tmp_path)) == ["ohwx", "zz"]
