"""Attaching adapter files to a model to draw with: ``-a FILE[:SCALE]`` read, each file checked before a model
loads, then loaded under its own name and scale, all or nothing. ``lowdim_sd.generate`` exports these names, as
it always has; the records of what is attached, and ``detach_adapters``, are ``attached_files``'s."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from shlex import quote

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.files import FORMAT, AdapterFile
from lowdim.given_folder import folder_line
from lowdim.injection.inference import normal_tensors
from lowdim.option_words import either
from lowdim_sd.attached_files import (
    AdapterArg,
    adapter_entries,
    free_name,
    refuse_embedding_again,
    still_attached,
    warn_attached_again,
)
from lowdim_sd.embedding_undo import tokens_undone_on_error
from lowdim_sd.loading import SDModel
from lowdim_sd.taught_tokens import check_recorded_token


def parse_adapter_arg(text: str) -> tuple[Path, float]:
    """'me.safetensors' or 'me.safetensors:0.8' -> (path, scale).

    A colon that is part of the name (an existing file, a drive letter) is kept in the path. A folder with a scale
    is refused here, where the scale is still as typed: the line naming the adapter inside keeps it.
    """
    path, sep, scale = text.rpartition(":")
    if not sep or not path or path.endswith(("/", "\\")) or Path(text).exists() or len(path) == 1:
        return Path(text), 1.0
    try:
        value = float(scale)
    except ValueError:
        raise LowdimError(f"'{text}': the scale after ':' must be a number (FILE or FILE:SCALE), "
                          f"got '{scale}'") from None
    if not math.isfinite(value):
        raise LowdimError(f"'{text}': the scale must be a finite number, got '{scale}'")
    if Path(path).is_dir():
        raise AdapterFileError(folder_refusal(Path(path), sep + scale))
    return Path(path), value


def attach_adapters(model: SDModel, adapters: Sequence[AdapterArg] | str | os.PathLike,
                    files: Sequence[AdapterFile] | None = None) -> list[str]:
    """Load each adapter under its own name and scale; returns their identifier tokens, in order ('' where a
    file records none).

    Each entry is a path (scale 1.0) or a ``(path, scale)`` pair. The adapters are named ``a0, a1, ...``, each
    the first name free, so a later call adds its files beside those already on the model; a file already
    attached is warned about (its effect would double: ``detach_adapters`` takes attached files off).

    A Textual Inversion file loads as an embedding (its tokens, its vectors as their rows), as diffusers'
    ``load_textual_inversion`` does, so it combines with weight adapters. ``files``: what ``check_adapter_files``
    returned for ``adapters``, which are then checked against the model without being read again.
    """
    adapters = adapter_entries(adapters)
    with model.one_run():  # before the files are read: a busy model is the first thing to say
        return _attach(model, adapters, files)


def _attach(model: SDModel, adapters: list[tuple[Path, float]], files: Sequence[AdapterFile] | None) -> list[str]:
    from lowdim_sd.textual_inversion import is_embedding, load_embedding

    view = lowdim.Adapters(model.modules)
    files = check_adapter_files(adapters) if files is None else files
    # Read before any is added: an earlier file whose name was deleted, and is now free again, drops out.
    tokens, added, entries, earlier = [], [], [], still_attached(model)
    # Normal tensors under torch.inference_mode too (a grown embedding table included): inference tensors would
    # break every later forward outside it. All or nothing: a refused file leaves nothing to block a retry.
    with normal_tensors(), tokens_undone_on_error(model, any(map(is_embedding, files))):
        try:
            for (path, scale), read in zip(adapters, files, strict=True):
                if is_embedding(read):
                    refuse_embedding_again(path, earlier)
                    tokens.append(load_embedding(model, read, scale))
                    entries.append(("", path, scale, tokens[-1]))  # an embedding has no adapter name
                    continue
                added.append(lowdim.load_adapter(read, view, name=free_name(view), scale=scale))
                tokens.append(added[-1].metadata.get("token") or "")
                entries.append((added[-1].name, path, scale, tokens[-1]))
        except BaseException:
            for info in reversed(added):
                view.delete(info.name)
            raise
    model.attached = [*earlier, *entries]
    warn_attached_again(model, adapters, earlier, stacklevel=3)  # once it loaded: a refused call added nothing
    return tokens


def check_adapter_files(adapters: Sequence[AdapterArg]) -> list[AdapterFile]:
    """Each file read and checked on its own (missing, foreign, damaged: one line naming it) before a model loads;
    the model's own checks of its layers follow when it is attached. Returns the files as read, for
    ``attach_adapters``: a command reads each file once."""
    return [_read(path) for path, _ in adapter_entries(adapters)]


def _read(path: Path) -> AdapterFile:
    if path.is_dir():  # the core's folder line, told what a folder holding no adapter is here (a whole model)
        raise AdapterFileError(folder_refusal(path))
    return read_adapter_file(path)


def read_adapter_file(path: str | os.PathLike) -> AdapterFile:
    """``lowdim.read_adapter``'s file, its recorded word checked too: what every command that takes an adapter's
    token (generate's and merge's -a, train's --init) reads it through, so an escape code or a newline an edited
    file holds never reaches a prompt, a terminal or a file written from it."""
    return check_recorded_token(lowdim.read_adapter(path))


def folder_refusal(folder: Path, typed_after: str = "") -> str:
    """The line for a folder given as an adapter: the adapter inside it to pass (``typed_after`` kept), else the
    whole model it is or holds, to draw with as the model, else that it holds none."""
    return folder_line(folder, FORMAT, "adapter", typed_after, whole_model_line(folder))


def whole_model_line(folder: Path) -> str:
    """What ``folder`` is where it is a whole model ``lowdim merge`` or ``lowdim train --full`` wrote, or holds one
    as ``model/`` (a --full run's folder), and how to draw with it; "" for any other folder."""
    from lowdim_sd.merged_model import is_merged_folder
    from lowdim_sd.model_info import TRAINED
    from lowdim_sd.run_outputs import trained_model

    for model in (folder, folder / "model"):
        if is_merged_folder(model):  # the record beside a pipeline index: one of lowdim's own models
            maker = TRAINED if trained_model(model) else "lowdim merge"
            what = "is a whole model" if model == folder else f"holds a whole model, {model}"
            use = either(f"draw it with -m {quote(str(model))}", f"load it as the model: load_sd({str(model)!r})")
            return f"{folder}{os.sep} {what} (`{maker}` wrote it), not an adapter: {use}"
    return ""
