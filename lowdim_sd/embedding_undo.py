"""Taking back the Textual Inversion tokens a block added: the tokenizer and the text encoder's token table as
they were. ``attach_adapters`` does it on an error (all or nothing); ``run_train`` given a model, however its
run ends (the model is handed back as it came)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lowdim_sd.loading import SDModel


@contextmanager
def tokens_undone_on_error(model: SDModel, embeddings: bool) -> Iterator[None]:
    """On an error, the embeddings loaded so far gone (``embeddings``: whether any may be loaded at all)."""
    if not embeddings:
        yield
        return
    undo = _undoer(model)
    try:
        yield
    except BaseException:
        undo()
        raise


@contextmanager
def tokens_undone(model: SDModel) -> Iterator[None]:
    """However the block ends, the tokens it added gone."""
    undo = _undoer(model)
    try:
        yield
    finally:
        undo()


def _undoer(model: SDModel) -> Callable[[], None]:
    """What puts the tokenizer and the token table back as they are now. A copy of the tokenizer's state is the one
    way back (tokenizers cannot remove a token added)."""
    tokenizer, encoder = model.pipe.tokenizer, model.pipe.text_encoder
    state, table = copy.deepcopy(tokenizer.__dict__), encoder.get_input_embeddings()
    weight = table.weight
    rows, data = weight.shape[0], weight.data

    def undo() -> None:
        tokenizer.__dict__.clear()
        tokenizer.__dict__.update(state)
        model.pipe.tokenizer = tokenizer
        # Growing the table made a new module (transformers 4) or new data in the same weight (5).
        if encoder.get_input_embeddings() is not table or weight.shape[0] != rows:
            encoder.resize_token_embeddings(rows, mean_resizing=False)  # the config's vocabulary size with it
            weight.data = data  # then the very table, weight and rows the model had
            table.weight = weight
            encoder.set_input_embeddings(table)

    return undo
