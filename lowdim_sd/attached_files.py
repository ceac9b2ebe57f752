"""What ``attach_adapters`` takes and what it leaves on a model: its list of files read in every form a Python
caller writes, the names it gives them, a file attached again (a re-run notebook cell), taking them off again
(``detach_adapters``), and the adapters a picture drawn now is drawn with (prompts.json's record)."""

from __future__ import annotations

import itertools
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.loading import SDModel

# One entry of ``attach_adapters``'s list: a path, or a path and the scale to draw it at.
AdapterArg = str | os.PathLike | tuple[str | os.PathLike, float]
FORM = "adapters takes a list of adapter files, each a path (scale 1.0) or a (path, scale) pair"


def adapter_entries(adapters: object) -> list[tuple[Path, float]]:
    """``adapters`` as (path, scale) pairs. A bare path is scale 1.0, as diffusers' ``load_lora_weights(path)``
    reads it and as ``GenerateConfig`` reads a bare prompt; one path given alone is a list of one (never its
    characters, each a file)."""
    if isinstance(adapters, (str, os.PathLike)):
        adapters = [adapters]
    if not isinstance(adapters, (list, tuple)):
        raise LowdimError(f"{FORM}, e.g. ['me.safetensors', ('style.safetensors', 0.5)]; got {adapters!r:.80}")
    return [_entry(item) for item in adapters]


def _entry(item: object) -> tuple[Path, float]:
    if isinstance(item, (str, os.PathLike)):
        return Path(item), 1.0
    if (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], (str, os.PathLike))
            and isinstance(item[1], numbers.Real) and not isinstance(item[1], bool)):
        return Path(item[0]), float(item[1])
    raise LowdimError(f"{FORM}, e.g. ('style.safetensors', 0.5); got {item!r:.80}")


def free_name(view: lowdim.Adapters) -> str:
    """The first of a0, a1, ... no adapter on the model holds: a later call adds its files beside the earlier's."""
    taken = set(view.names())
    return next(name for name in (f"a{index}" for index in itertools.count()) if name not in taken)


def still_attached(model: SDModel) -> list[tuple[str, Path, float, str]]:
    """The files ``attach_adapters`` loaded that are still on the model (an adapter not deleted, an embedding's
    token still in the tokenizer): what a picture drawn now is drawn with."""
    live, vocabulary = set(lowdim.Adapters(model.modules).names()), model.pipe.tokenizer.get_vocab()
    return [entry for entry in model.attached if (entry[0] in live if entry[0] else entry[3] in vocabulary)]


def adapters_on(model: SDModel) -> list[dict]:
    """prompts.json's entry for each adapter on the model: the files ``attach_adapters`` loaded, then by name
    any loaded another way (``lowdim.load_adapter``), whose file and scale the model does not keep."""
    attached = still_attached(model)
    known = {entry[0] for entry in attached}
    view = lowdim.Adapters(model.modules)
    return ([{"file": str(path), "scale": scale, "token": token} for _, path, scale, token in attached]
            + [{"file": None, "scale": None, "token": view.info(name).metadata.get("token") or "", "adapter": name}
               for name in view.names() if name not in known])


def warn_attached_again(model: SDModel, adapters: list[tuple[Path, float]], earlier: list, stacklevel: int) -> None:
    """One warning per file of ``adapters`` already attached as a weight adapter: in a notebook re-running the
    attaching cell is the usual way to work, and a second copy silently doubles the file's effect. It is still
    added (a later call adds beside the earlier, as documented); ``detach_adapters`` takes the first off."""
    held = {_same_file(path): name for name, path, _, _ in earlier if name}
    for path, _ in adapters:
        if (name := held.get(_same_file(path))) is not None:
            warnings.warn(f"{path} is already attached as {name}; attaching it again doubles its effect "
                          f"(detach_adapters(model, ['{name}']) takes the first off, detach_adapters(model) "
                          f"every attached file)", stacklevel=stacklevel + 1)


def refuse_embedding_again(path: Path, earlier: list) -> None:
    """An embedding file already attached: its token cannot get a second row (nor be taken off), so one line
    naming the file, not the tokenizer's 'token already claimed by another embedding'."""
    token = next((token for name, held, _, token in earlier if not name and _same_file(held) == _same_file(path)),
                 None)
    if token is not None:
        raise LowdimError(f"{path} is already attached (its token '{token}'): an embedding cannot be attached twice, "
                          f"and detach_adapters leaves its token on; load the model again (load_sd) to attach it anew")


def _same_file(path: Path) -> Path:
    """The path a file is compared by: 'me/a.safetensors' and './me/a.safetensors' are one file."""
    try:
        return path.resolve()
    except OSError:  # a path the system cannot resolve is compared as written
        return path


def detach_adapters(model: SDModel, names: str | Sequence[str] | None = None) -> list[str]:
    """Take adapters ``attach_adapters`` put on ``model`` off again (unmerged first where merged); returns the
    names removed, in order. ``names``: which (``a0``, ...; any adapter on the model); None: every one
    ``attach_adapters`` put on that is still there, not those loaded another way. A name not on the model is
    refused, naming those that are, before any is removed. Textual Inversion tokens stay: a tokenizer cannot
    drop a token it added, so re-attaching an embedding file needs a fresh ``load_sd``."""
    with model.one_run():  # it changes the adapters another thread's run may be drawing with
        view = lowdim.Adapters(model.modules)
        if names is None:
            chosen = [entry[0] for entry in still_attached(model) if entry[0]]
        else:
            chosen = list(dict.fromkeys([names] if isinstance(names, str) else names))  # each once
        present = view.names()
        for name in chosen:
            if name not in present:
                raise LowdimError(f"no adapter named '{name}' on this model to detach; present: "
                                  f"{', '.join(present) or 'none'}")
        for name in chosen:
            view.delete(name)
        model.attached = still_attached(model)  # the record of what draws now: the removed files leave it
        return chosen
