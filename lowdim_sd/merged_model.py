"""``lowdim merge``: fold adapters into a model's weights and save the whole model.

For tools with no LoRA support and for deployments that want zero adapter overhead. The output is
either one original-layout checkpoint (what A1111 and ComfyUI load as a model) or a diffusers folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import lowdim
from lowdim.errors import LowdimError
from lowdim.files import AdapterFile, atomic_write, current_umask
from lowdim_sd.generate import attach_adapters, check_adapter_files
from lowdim_sd.ldm_checkpoint import save_single_file
from lowdim_sd.loading import SDModel
from lowdim_sd.text_encoder_files import save_pipeline
from lowdim_sd.textual_inversion import is_embedding

FORMATS = ("single-file", "diffusers")
RECORD = "lowdim_merge.json"  # in a merged diffusers folder: what went into it (diffusers ignores the file)
RECORD_KEY = "lowdim_merge"  # the same record in a merged single file's metadata


def save_merged(model: SDModel, adapters: list[tuple[Path, float]], out: Path, fmt: str = "single-file",
                overwrite: bool = False, files: Sequence[AdapterFile] | None = None) -> tuple[Path, list[str]]:
    """Load each (adapter, scale), fold them all into ``model`` for good and write it to ``out``.

    Returns the written path and the adapters' identifier tokens, which prompts must still use. A Textual
    Inversion embedding is folded in as its tokens (tokenizer) and rows (text encoder), so it needs the
    diffusers format. ``overwrite`` replaces an earlier output whole, never the file or folder ``model``
    was loaded from. ``files``: the adapters as ``check_adapter_files`` read them, used instead of reading
    them again.
    """
    out = Path(out)
    check_merge_settings(adapters, out, fmt, overwrite, Path(model.source))  # before any file is read
    files = check_adapter_files(adapters) if files is None else files  # read here once, for both uses below
    check_merge_embeddings(adapters, fmt, files)
    tokens = attach_adapters(model, adapters, files)
    lowdim.Adapters(model.modules).merge_and_unload()
    base = model.base_model_id  # a registered name or hub id as it is; a folder as an absolute path
    base = str(Path(base).resolve()) if Path(base).exists() else base
    tokens = [token for token in tokens if token]
    record = merge_record(base, adapters, tokens)
    if fmt == "single-file":
        written = save_single_file(model.pipe, out, base, {RECORD_KEY: json.dumps(record)})
    else:
        written = _save_folder(model, out, record)
    return written, tokens


def merge_record(base: str, adapters: list[tuple[Path, float]], tokens: list[str]) -> dict:
    """What a merged model was made of, so ``lowdim show`` can name its base, adapters and the words that
    call its subjects, which the weights alone no longer say."""
    return {"base_model": base, "adapters": [{"file": Path(path).name, "scale": scale} for path, scale in adapters],
            "tokens": list(dict.fromkeys(tokens))}


def check_merge_settings(adapters: list[tuple[Path, float]], out: Path, fmt: str, overwrite: bool,
                         source: Path) -> None:
    """Everything about a merge that needs neither the model nor an adapter file (format, adapters given, --out),
    one line for the first wrong; ``source`` is where the base model is loaded from, which the output must never
    replace."""
    if fmt not in FORMATS:
        raise LowdimError(f"unknown --format '{fmt}'; known: {', '.join(FORMATS)}")
    if not adapters:
        raise LowdimError("no adapter given: pass at least one --adapter FILE[:SCALE]")
    _check_target(out, fmt, overwrite, source)


def check_merge_embeddings(adapters: list[tuple[Path, float]], fmt: str,
                           files: Sequence[AdapterFile] | None = None) -> None:
    """An embedding among the adapters needs --format diffusers. ``files``: the adapters as
    ``check_adapter_files`` read them; without them, they are read here."""
    files = check_adapter_files(adapters) if files is None else files
    embeddings = [path for (path, _), read in zip(adapters, files, strict=True) if is_embedding(read)]
    if embeddings and fmt == "single-file":
        # The new tokens live in the tokenizer, which an A1111/ComfyUI checkpoint does not hold.
        raise LowdimError(f"{embeddings[0]}: a Textual Inversion embedding adds tokens to the tokenizer, which a "
                          f"single-file checkpoint cannot hold; merge with --format diffusers, or keep the "
                          f"embedding beside the model (lowdim export --format a1111)")


def _check_target(out: Path, fmt: str, overwrite: bool, source: Path) -> None:
    """Before the model is changed or written: a bad --out should cost nothing."""
    if out.exists() and out.resolve() == source.resolve():
        raise LowdimError(f"{out}: is the base model itself, which merge never replaces; pick a new --out")
    if fmt == "diffusers" and out.exists() and not out.is_dir():
        raise LowdimError(f"{out}: already exists and is not a folder; pick a new --out")
    if fmt == "diffusers" and out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LowdimError(f"{out}: already exists and is not an empty folder; pick a new --out or pass --overwrite")
    if fmt == "single-file" and (out.is_dir() or out.suffix.lower() != ".safetensors"):
        raise LowdimError(f"{out}: a single-file checkpoint needs a file name ending in .safetensors "
                          f"(or --format diffusers for a pipeline folder)")
    if fmt == "single-file" and out.exists() and not overwrite:
        raise LowdimError(f"{out}: already exists; pick a new --out or pass --overwrite")


def _save_folder(model: SDModel, out: Path, record: dict) -> Path:
    """Write next to ``out`` and rename at the end, so an interrupted save leaves no half folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700: other users (a server) could not read it
    try:
        save_pipeline(model.pipe, staging)
        atomic_write(staging / RECORD, lambda name: Path(name).write_text(json.dumps(record, indent=1)))
        earlier = None
        if out.is_dir():  # empty, or --overwrite (checked above); os.replace cannot replace a folder
            earlier = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, earlier / "model")
        os.replace(staging, out)
        if earlier is not None:
            shutil.rmtree(earlier, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
