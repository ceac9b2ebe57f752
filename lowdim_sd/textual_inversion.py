"""Textual Inversion on an SD pipeline: the tokens of [V], training, loading and checking embedding files.

The space (``lowdim.spaces.ti``) only knows rows of a matrix; this module owns what needs the
tokenizer and the text encoder:

* the identifier becomes n new tokens, ``token``, ``token_1``, ... (diffusers' naming, so its
  pipelines expand a multi-vector identifier in prompts), appended to the vocabulary with zero rows;
* training injects the space on the token embedding only, starting from the init word's vector;
* a TI file is loaded as an embedding (tokens added, rows written), the way diffusers'
  ``load_textual_inversion`` does, so any number of embeddings and weight adapters load together and
  ``merge_and_unload`` folds the weight adapters while the rows already are weights.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from safetensors import safe_open
from torch import Tensor

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.filecheck import printable_name
from lowdim.files import AdapterFile, read_adapter
from lowdim.injection.layer import AdapterLayer
from lowdim.injection.select import EMBEDDING, LayerSet
from lowdim.option_words import either
from lowdim.spaces.base import Space
from lowdim_sd.loading import SDModel
from lowdim_sd.modes import ADAPTER, AdapterTrainable

SPACE = "ti"
# Characters of a token: people's are words (sks, <my-face>); a prompt holds 77 tokens, so one far longer is an
# edited file, and diffusers' suffixes (_1, _2 ...) still fit beside it.
MAX_TOKEN = 64
SPECIAL_TOKEN = re.compile(r"<\|.*\|>")  # CLIP's <|startoftext|> and <|endoftext|>


class EmbeddingError(AdapterFileError):
    """A Textual Inversion embedding that does not fit the model, or whose token is taken."""


def learns_tokens(space: Space | str) -> bool:
    """Whether a space (or a space name) writes new token rows instead of adapting weight layers."""
    if isinstance(space, str):
        entry = lowdim.get_registry().spaces.get(space)
        return bool(entry and getattr(entry.value, "learns_tokens", False))
    return bool(getattr(space, "learns_tokens", False))


def token_problem(token: str) -> str | None:
    """Why no SD1.x model takes ``token`` as a Textual Inversion word, told without a tokenizer (None: nothing
    found; whether the word is already in a vocabulary needs the model's tokenizer, ``add_tokens`` checks it).
    Shared by every reader of a TI file (generate's loader, export), so export never hands other tools a file
    lowdim itself refuses to draw with."""
    if not token:
        return "is empty"
    if len(token) > MAX_TOKEN:
        return f"is longer than {MAX_TOKEN} characters"
    if not token.isprintable() or any(char.isspace() for char in token):
        return "holds whitespace or a character that does not print; a token is one word"
    if SPECIAL_TOKEN.fullmatch(token):
        return "is written as a special token of CLIP's tokenizer (<|...|>)"
    if token != token.lower():
        return ("holds capital letters, which SD's CLIP tokenizer lowercases in every prompt, so no prompt calls "
                "it; choose a lowercase token")
    return None


def printable_token(token: str) -> str:
    """``token`` for one printed line: quoted, escaped and cut shorter than a layer name, as it sits mid-sentence."""
    return printable_name(token, longest=60)


def token_names(token: str, vectors: int) -> list[str]:
    """``sks``, ``sks_1``, ``sks_2``: one token per vector, named as diffusers names them."""
    return [token] + [f"{token}_{index}" for index in range(1, vectors)]


class TokenOptions(Protocol):
    """The options of every space that ``learns_tokens``: ``ti``'s, which a plugin's token space shares
    (docs/plugins.md)."""

    vectors: int
    init_word: str


def token_options(space: Space) -> TokenOptions:
    """``space``'s config, as the token options it has when the space ``learns_tokens``."""
    return cast(TokenOptions, space.config)  # SpaceConfig declares no options; a token space's has these


def prompt_token(token: str, vectors: int) -> str:
    """What [V] becomes in a training prompt: every vector's token, in order."""
    return " ".join(token_names(token, vectors))


def embedding_layer_name(model: SDModel) -> str:
    """The token embedding's name in ``model.modules``."""
    table = model.pipe.text_encoder.get_input_embeddings()
    for name, module in model.modules["text_encoder"].named_modules():
        if module is table:
            return f"text_encoder.{name}"
    raise LowdimError("the text encoder's input embedding is not one of its modules; Textual Inversion needs it")


def _table(model: SDModel) -> torch.nn.Embedding:
    table = model.pipe.text_encoder.get_input_embeddings()
    if isinstance(table, AdapterLayer):
        raise LowdimError("the token embedding already carries a Textual Inversion adapter: load embeddings "
                          "before injecting one")
    return table


def add_tokens(model: SDModel, token: str, vectors: int, source: str = "") -> list[int]:
    """Append the identifier's n tokens to the tokenizer and n zero rows to the embedding; their ids."""
    tokenizer = model.pipe.tokenizer
    names = token_names(token, vectors)
    where = f"{source}: " if source else ""
    _refuse_identifier(tokenizer, token, names, source)
    pieces = tokenizer.tokenize(token)
    if len(pieces) == 1:
        warnings.warn(f"the identifier '{token}' is already a word of the vocabulary ({pieces[0]}); its "
                      f"embedding now stands for the subject in every prompt that uses it", stacklevel=2)
    rows = _table_rows(model)
    tokenizer.add_tokens(names)
    ids = tokenizer.convert_tokens_to_ids(names)
    if ids != list(range(rows, rows + vectors)) or tokenizer.tokenize(" ".join(names)) != names:
        raise LowdimError(f"{where}this tokenizer does not keep the identifier '{token}' as its own token "
                          f"(it lowercases text?); choose a lowercase identifier")
    _append_zero_rows(model, rows, vectors)
    return ids


def _refuse_identifier(tokenizer: Any, token: str, names: list[str], source: str) -> None:
    """Refuse an identifier whose tokens cannot be added: spaces, unreadable, claimed, or in the vocabulary."""
    where = f"{source}: " if source else ""
    if any(not name or name.split() != [name] for name in names):
        raise LowdimError(f"{where}the identifier {token!r} must be one word without spaces")
    # Before the claimed check: CLIP's special tokens are added tokens too, and no embedding claimed them.
    if problem := token_problem(token):  # what a file's reader refuses (read_embedding): never trained either
        raise LowdimError(f"{where}the identifier {printable_token(token)} {problem}")
    taken = [name for name in names if name in tokenizer.added_tokens_encoder]
    if taken:
        # A file's token is the file's (generate's --token cannot rename it): only another training changes it.
        fix = (f"draw with one of them, or train one again with another {trained_token()}" if source
               else f"train or load one with another {token_option()}")
        raise EmbeddingError(f"{where}token '{taken[0]}' is already claimed by another embedding; two embeddings "
                             f"cannot share a token ({fix})")
    if token in tokenizer.get_vocab():
        # A file's token is the file's: generate's --token only names what [V] becomes, so it cannot change it.
        fix = f"train it again with another {trained_token()}" if source else f"choose another {token_option()}"
        raise LowdimError(f"{where}the identifier '{token}' is itself a token of the vocabulary, which cannot "
                          f"get a second row; {fix}")


def _table_rows(model: SDModel) -> int:
    """The embedding's rows, refused unless they are the tokenizer's ids: else new ids would miss new rows."""
    tokenizer = model.pipe.tokenizer
    rows = _table(model).weight.shape[0]
    if len(tokenizer) != rows:
        raise LowdimError(f"the tokenizer has {len(tokenizer)} tokens but the text encoder's embedding {rows} "
                          f"rows; Textual Inversion needs them equal")
    return rows


def _append_zero_rows(model: SDModel, rows: int, vectors: int) -> None:
    """Grow the embedding's ``rows`` rows by ``vectors`` zero ones (the space's ΔE is then the rows themselves)."""
    text_encoder = model.pipe.text_encoder
    # No mean resizing: the rows are zeroed anyway, and its covariance of SD's 49408x768 table costs seconds.
    text_encoder.resize_token_embeddings(rows + vectors, mean_resizing=False)
    table = text_encoder.get_input_embeddings()
    with torch.no_grad():
        table.weight[rows:] = 0
    table.weight.requires_grad_(False)  # resizing makes a fresh, trainable Parameter


def token_option() -> str:
    return either("--token", "token (TrainConfig(token=...))")


def trained_token() -> str:
    """The token option named as training's, for a reader outside training (generate's ``--token`` is another)."""
    return either("token (lowdim train --token)", "token (TrainConfig(token=...))")


def init_vector(model: SDModel, word: str) -> Tensor:
    """The embedding of ``word``, which must be one token: the paper's init of the new vectors."""
    tokenizer = model.pipe.tokenizer
    pieces = tokenizer.tokenize(word)
    if len(pieces) != 1:
        raise LowdimError(f"init_word '{word}' is split into {len(pieces)} tokens by this tokenizer "
                          f"({' + '.join(pieces)}); choose a word that is one token, e.g. "
                          f"{either('--set init_word=face', 'space_options=' + repr({'init_word': 'face'}))}")
    row = tokenizer.convert_tokens_to_ids(pieces)[0]
    return _table(model).weight[row].detach().float().clone()


def ti_trainable(model: SDModel, space: Space, *, token: str = "sks", seed: int = 0,
                 subject_names: list[str] | None = None, save_dtype: str = "fp32") -> AdapterTrainable:
    """Tokens for [V], then the space on the token embedding alone, its vectors at the init word's embedding.

    With several subject names each subject gets its own vectors (one per-sample adapter each) behind
    the same tokens, exactly as if trained alone.
    """
    names = subject_names or ["adapter"]
    options = token_options(space)
    start = init_vector(model, options.init_word)  # before any change: a bad init word costs nothing
    add_tokens(model, token, options.vectors)
    layer = embedding_layer_name(model)
    targets = LayerSet("token-embedding", (layer,), types=(EMBEDDING,))
    adapters = lowdim.Adapters(model.modules)
    adapters.add(ADAPTER, space, targets, seed=seed, batch=len(names) if len(names) > 1 else None)
    with torch.no_grad():
        for param in adapters.parameters(ADAPTER):
            param.copy_(start.expand(param.shape))
    return AdapterTrainable(model, ADAPTER, names, {"base_model": model.base_model_id, "token": token},
                            save_dtype=save_dtype)


# -- files ------------------------------------------------------------------------------------
@dataclass
class Embedding:
    """A TI file's vectors, its token and the text encoder it was made for."""

    path: Path
    token: str
    vectors: Tensor  # (n, width), the file's scale folded in
    vocabulary: int  # the base vocabulary the file's tokens were appended to
    base_model: str


def is_embedding_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a lowdim adapter of a token space (read from its metadata alone)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # unreadable: the adapter reader then says what is wrong with it
        return False
    return metadata.get("format") == "lowdim.adapter" and learns_tokens(metadata.get("space", ""))


def refuse_embedding_start(path: str | os.PathLike) -> None:
    """An embedding handed where rank relaxation wants an adapter to finetune on top of (``--init``): its rows
    are new tokens, not an update of the model's weights, so no LoRA can be relaxed from it."""
    if is_embedding_file(path):
        init = either("--init", "TrainJob(initial=...)")
        raise EmbeddingError(f"{path}: a Textual Inversion embedding; {init} takes a weight adapter (lidb, lora, "
                             f"stack ...) to finetune on top of, and an embedding's rows are new tokens, not an "
                             f"update of the model's weights")


def is_embedding(adapter: AdapterFile) -> bool:
    """``is_embedding_file`` for a file already read: a lowdim adapter of a token space."""
    return learns_tokens(adapter.space)


def read_embedding(path: str | os.PathLike | AdapterFile, scale: float = 1.0) -> Embedding:
    """Read and check a TI adapter file on its own (one token-embedding layer, a token, finite vectors); ``path``
    may be the file as ``read_adapter`` already returned it."""
    adapter = path if isinstance(path, AdapterFile) else read_adapter(path)
    path = adapter.path
    if not learns_tokens(adapter.space) or len(adapter.layers) != 1:
        raise EmbeddingError(f"{path}: not a Textual Inversion embedding (space '{adapter.space.name}', "
                             f"{len(adapter.layers)} layers)")
    layer = adapter.layers[0]
    if not layer.name.startswith("text_encoder.") or not layer.name.endswith("embeddings.token_embedding"):
        raise EmbeddingError(f"{path}: its layer {layer.name} is not a text encoder's token embedding")
    token = adapter.metadata.get("token", "")
    if not token:
        raise EmbeddingError(f"{path}: the file names no token for its vectors")
    if problem := token_problem(token):
        raise EmbeddingError(f"{path}: its token {printable_token(token)} {problem}")
    down, _ = adapter.lora_factors()[layer.name]
    vectors = down.float() * scale
    return Embedding(path, token, vectors, layer.out_features - len(vectors), adapter.metadata.get("base_model", ""))


def check_fits(embedding: Embedding, model: SDModel) -> None:
    """Refuse an embedding made for another text encoder, naming both widths (or vocabularies)."""
    table = _table(model)
    width = table.weight.shape[1]
    made_for = f" ({embedding.base_model})" if embedding.base_model else ""
    if embedding.vectors.shape[1] != width:
        raise EmbeddingError(f"{embedding.path}: made for a text encoder of width {embedding.vectors.shape[1]}"
                             f"{made_for}, but this model's text encoder has width {width}")
    vocabulary = model.pipe.tokenizer.vocab_size
    if embedding.vocabulary != vocabulary:
        raise EmbeddingError(f"{embedding.path}: made for a text encoder with a vocabulary of "
                             f"{embedding.vocabulary} tokens{made_for}, but this model's has {vocabulary}")


def load_embedding(model: SDModel, path: str | os.PathLike | AdapterFile, scale: float = 1.0) -> str:
    """Add the file's tokens to ``model`` with its vectors (times ``scale``) as their rows; returns the token.
    ``path`` may be the file as ``read_adapter`` already returned it."""
    embedding = read_embedding(path, scale)
    check_fits(embedding, model)
    source = path.path if isinstance(path, AdapterFile) else path
    ids = add_tokens(model, embedding.token, len(embedding.vectors), source=str(source))
    with torch.no_grad():
        table = model.pipe.text_encoder.get_input_embeddings().weight
        table[ids] = embedding.vectors.to(table.device, table.dtype)
    return embedding.token


# -- export ---------------------------------------------------------------------------------
EXPORT_FORMATS = ("diffusers", "a1111")


def to_diffusers(embedding: Embedding) -> dict[str, Tensor]:
    """``{token: (n, width)}``: what diffusers' ``load_textual_inversion`` reads (a one-key state dict)."""
    return {embedding.token: embedding.vectors}


def to_a1111(embedding: Embedding) -> dict[str, Tensor]:
    """``{"emb_params": (n, width)}``: A1111's and ComfyUI's .safetensors embedding; they name it by its file."""
    return {"emb_params": embedding.vectors}


def export_embedding(source: str | os.PathLike, target: str | os.PathLike, fmt: str = "diffusers",
                     dtype: torch.dtype = torch.float16, replace: bool = True) -> Path:
    """Write a TI adapter as a plain embedding file (atomically), with what it was made for as metadata;
    ``replace=False``: FileExistsError where a file is at ``target`` when the write is done."""
    from lowdim.files import atomic_save
    from lowdim_sd.recorded_paths import shared_model_name  # a shared file: no path of this machine

    if fmt not in EXPORT_FORMATS:
        raise EmbeddingError(f"{source}: a Textual Inversion embedding exports as {' or '.join(EXPORT_FORMATS)}, "
                             f"not '{fmt}' (it is an embedding, not a LoRA)")
    embedding = read_embedding(source)
    tensors = {key: value.to(dtype) for key, value in (to_diffusers if fmt == "diffusers" else to_a1111)(
        embedding).items()}
    if not all(bool(torch.isfinite(value).all()) for value in tensors.values()):  # fp16 ends at 65504
        fix = either("export with --save-dtype fp32", "export_adapter(dtype='fp32')")
        raise EmbeddingError(f"{source}: the embedding of {embedding.token} goes beyond {str(dtype).split('.')[-1]}"
                             f"'s range (Inf/NaN in the export); {fix}")
    metadata = {"format": "pt", "embedding_format": fmt, "token": embedding.token, "name": embedding.token,
                "vectors": str(len(embedding.vectors)), "width": str(embedding.vectors.shape[1]),
                "vocabulary": str(embedding.vocabulary), "base_model": shared_model_name(embedding.base_model),
                "source_adapter": Path(source).name, "space": SPACE}
    return atomic_save(tensors, metadata, Path(target), replace=replace)
