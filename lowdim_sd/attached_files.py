"""What ``attach_adapters`` takes and what it leaves on a model: its list of files read in every form a Python
caller writes, the names it gives them, and the adapters a picture drawn now is drawn with (prompts.json's record)."""

from __future__ import annotations

import itertools
import numbers
import os
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
