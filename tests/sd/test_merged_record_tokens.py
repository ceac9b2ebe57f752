"""The words a merged model's record says it was taught are read as words: from someone else's merge, a value
that is not printable text (an escape sequence, a number, a megabyte of text) is left out, not carried into
generate's warnings and prompts."""

from __future__ import annotations

import json
from pathlib import Path

from lowdim_sd.merged_model import RECORD, merge_record
from lowdim_sd.taught_tokens import merged_tokens


def test_only_printable_words_of_a_sane_length_are_taken(tmp_path):
    record = {"base_model": "x", "adapters": [], "tokens": ["ohwx", "sk\x1b[31ms", 5, "", "y" * 5000, "zz"]}
    (tmp_path / RECORD).write_text(json.dumps(record))
    assert merged_tokens(str(tmp_path)) == ["ohwx", "zz"]


def test_the_record_keeps_the_adapters_word_order_so_the_first_adapters_word_is_the_one_prompted(tmp_path):
    """show and generate take the first word as the one to prompt with: sorting would put another subject first."""
    adapters = [(Path("zed.safetensors"), 1.0), (Path("amy.safetensors"), 1.0), (Path("zed2.safetensors"), 0.5)]
    record = merge_record("x", adapters, ["zed", "amy", "zed"])
    assert record["tokens"] == ["zed", "amy"]  # each word once, in the order its adapter went in
    (tmp_path / RECORD).write_text(json.dumps(record))
    assert merged_tokens(str(tmp_path)) == ["zed", "amy"]
