"""A Textual Inversion export checked against the model its file names (``base_model``), without loading that model.

diffusers' ``load_textual_inversion`` refuses a token its tokenizer's vocabulary already holds, and every reader
(diffusers, A1111, ComfyUI) refuses vectors of another width than the text encoder's, so such a file would only
fail in the other tool. Both are told from the base model's tokenizer folder and ``text_encoder/config.json``,
where they are on this machine: a registered model's folder, a diffusers folder, or a hub id's cached copy (never
a download). A single-file checkpoint, an uncached hub id or a file that names no model leaves both to the reader.
"""

from __future__ import annotations

from pathlib import Path

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.filecheck import printable_name
from lowdim.option_words import either
from lowdim.paths import expand_user
from lowdim_sd.textual_inversion import Embedding, EmbeddingError, printable_token, token_names, token_option


def check_embedding_target(embedding: Embedding, fmt: str) -> None:
    """One line where ``embedding``'s base model would refuse it: vectors of another width (every format), or,
    for ``fmt`` diffusers, a token of its vocabulary (an a1111 embedding is named by its file, not its token)."""
    files = base_model_files(embedding.base_model)
    if files is None:
        return
    tokenizer, config = files
    base = embedding.base_model if embedding.base_model.isprintable() else printable_name(embedding.base_model)
    width, model_width = embedding.vectors.shape[1], text_encoder_width(config)
    if model_width is not None and width != model_width:
        raise EmbeddingError(f"{embedding.path}: its vectors are {width} wide, but the text encoder of its base "
                             f"model {base} is {model_width} wide ({config}); no reader loads it into that model")
    if fmt != "diffusers":
        return
    vocabulary = tokenizer_vocabulary(tokenizer)
    taken = [name for name in token_names(embedding.token, len(embedding.vectors)) if name in vocabulary]
    if taken:
        raise EmbeddingError(f"{embedding.path}: its token {printable_token(taken[0])} is already a token of the "
                             f"vocabulary of {base}, and diffusers' load_textual_inversion (like lowdim's own "
                             f"loader) refuses such a file; train it again with another {token_option()}, or export "
                             f"{either('--format a1111', 'with fmt=' + repr('a1111'))}, which A1111 and ComfyUI "
                             f"name by its file")


def base_model_files(base_model: str) -> tuple[Path, Path] | None:
    """(tokenizer folder, text-encoder config.json) of ``base_model`` where both are on this machine, else None."""
    if not base_model:
        return None
    from lowdim_sd.loading import name_and_source

    try:
        _, source = name_and_source(base_model, refuse_typos=False)
        folder = expand_user(source)
        if folder.is_dir():
            tokenizer, config = folder / "tokenizer", folder / "text_encoder" / "config.json"
            return (tokenizer, config) if tokenizer.is_dir() and config.is_file() else None
        if folder.exists() or source.count("/") != 1:  # a single-file checkpoint, or no hub id
            return None
    # A name two plugins claim or a registered model that is no SD1.x one (LowdimError), a name no path can have
    # (too long, a NUL): no model of that name is here to read.
    except (LowdimError, OSError, ValueError):
        return None
    return _cached_files(source)


def _cached_files(hub_id: str) -> tuple[Path, Path] | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(hub_id, "text_encoder/config.json")
        # the tokenizer in either of the layouts transformers saves: tokenizer.json, or vocab.json and merges.txt
        tokenizer = [try_to_load_from_cache(hub_id, f"tokenizer/{name}") for name in ("tokenizer.json", "vocab.json")]
    except ValueError:  # not a valid repository id: nothing of that name is cached
        return None
    cached = [path for path in tokenizer if isinstance(path, str)]
    return (Path(cached[0]).parent, Path(config)) if cached and isinstance(config, str) else None


def text_encoder_width(config: Path) -> int | None:
    """The ``hidden_size`` a CLIP text encoder's config.json gives its token rows; None where it says none."""
    try:
        width = json_text.loads(config.read_text(encoding="utf-8")).get("hidden_size")
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object: the model's loader says
        return None
    return width if isinstance(width, int) and not isinstance(width, bool) else None


def tokenizer_vocabulary(folder: Path) -> set[str]:
    """The tokens of the tokenizer in ``folder``, added ones included, as ``load_textual_inversion`` checks them;
    empty where transformers cannot read it (the model's own loader then says why)."""
    from transformers import CLIPTokenizer

    from lowdim_sd.loading import quiet_libraries

    try:
        with quiet_libraries():
            return set(CLIPTokenizer.from_pretrained(str(folder), local_files_only=True).get_vocab())
    except (OSError, ValueError, TypeError):  # missing or malformed files
        return set()
