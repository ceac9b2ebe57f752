"""The offline CLIP tokenizer builder: every listed word must come out as one whole token."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")

from lowdim_sd.tokenizer import apply_merges, build_vocab, write_clip_tokenizer  # noqa: E402

words = st.lists(st.text("abcdeilnortv", min_size=1, max_size=7), min_size=1, max_size=12, unique=True)


def test_a_shorter_word_sharing_letters_with_a_longer_one_stays_whole() -> None:
    # "light" sorts before "olive" and gives "l i" the earlier merge, which used to split "olive".
    vocab, merges = build_vocab(["light", "olive"])
    ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
    assert apply_merges(list("olive"[:-1]) + ["e</w>"], ranks) == ["olive</w>"]
    assert "olive</w>" in vocab and "light</w>" in vocab


@settings(max_examples=25, deadline=None)
@given(words)
def test_every_word_is_one_token_for_clip_tokenizer(word_list) -> None:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as folder:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder, word_list))
        for word in word_list:
            ids = tokenizer(word).input_ids
            assert len(ids) == 3, (word, word_list, tokenizer.convert_ids_to_tokens(ids))
