"""Taking back the Textual Inversion embeddings a failed ``attach_adapters`` loaded, so it is all or nothing."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from lowdim_sd.loading import SDModel


@contextmanager
def tokens_undone_on_error(model: SDModel, embeddings: bool) -> Iterator[None]:
    """On an error, the tokenizer and the text encoder's token table as they were: the embeddings loaded so far
    gone. A copy of the tokenizer's state is the one way back (tokenizers cannot remove a token added)."""
    if not embeddings:
        yield
        return
    tokenizer, encoder = model.pipe.tokenizer, model.pipe.text_encoder
    state, table = copy.deepcopy(tokenizer.__dict__), encoder.get_input_embeddings()
    weight = table.weight
    rows, data = weight.shape[0], weight.data
    try:
        yield
    except BaseException:
        tokenizer.__dict__.clear()
        tokenizer.__dict__.update(state)
        # load_embedding grew the table: a new module (transformers 4) or new data in the same weight (5).
        if encoder.get_input_embeddings() is not table or weight.shape[0] != rows:
            encoder.resize_token_embeddings(rows, mean_resizing=False)  # the config's vocabulary size with it
            weight.data = data  # then the very table, weight and rows the model had
            table.weight = weight
            encoder.set_input_embeddings(table)
        raise
