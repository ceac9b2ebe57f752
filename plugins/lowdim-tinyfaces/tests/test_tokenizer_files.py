"""The shipped tokenizer folder loads from vocab.json + merges.txt alone (transformers 4) with tokenizer.json's ids."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("transformers")

from lowdim_tinyfaces import model_path  # noqa: E402
from lowdim_tinyfaces.styles import STYLES, prompt_for  # noqa: E402
from lowdim_tinyfaces.train_config import write_bpe_files  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

FOLDER = model_path() / "tokenizer"
# Every style with the training subject and an unseen word, plus case, spacing, punctuation and non-ASCII.
PROMPTS = [prompt_for(style, subject) for style in STYLES for subject in ("sks face", "sks person")]
PROMPTS += ["A  Pop-Art poster of a [V] face at night!", "", "sks", "2 cafés, 10 hats's"]


def test_vocab_and_merges_alone_give_the_tokenizer_json_ids(tmp_path):
    from transformers import CLIPTokenizer

    # Only the files transformers 4's CLIPTokenizer reads: without tokenizer.json, 5 must use them too.
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(FOLDER / name, tmp_path)
    from_bpe = CLIPTokenizer.from_pretrained(tmp_path)
    reference = Tokenizer.from_file(str(FOLDER / "tokenizer.json"))
    reference.no_padding()
    assert from_bpe.model_max_length == 77
    for prompt in PROMPTS:
        assert from_bpe(prompt).input_ids == reference.encode(prompt).ids, prompt


def test_export_writes_the_committed_vocab_and_merges(tmp_path):
    shutil.copy(FOLDER / "tokenizer.json", tmp_path)  # what transformers 5's save_pretrained leaves
    write_bpe_files(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == json.loads((FOLDER / "vocab.json").read_text())
    assert (tmp_path / "merges.txt").read_text() == (FOLDER / "merges.txt").read_text()
