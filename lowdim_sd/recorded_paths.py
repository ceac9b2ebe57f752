"""How lowdim's files record the files they were made from, one policy for all (docs/sd.md, "Paths in files"):

1. A file that stays on the user's machine (an adapter, a run folder, ``prompts.json``) records the user's own
   files by absolute path: that is what lets ``lowdim show`` and a rerun find them from any folder.
2. A file shipped inside an installed package (a model's default hypernetwork, TinyFaces') is recorded by what
   names it, its file name and the model that ships it, not by where pip put it (site-packages, a user's venv):
   that path says nothing on another machine but the first machine's folder layout. So is a registered model's
   own folder (TinyFaces', sd15's copy in the Hugging Face cache) that a merged model read its configs from: by the
   model's name, which the registry turns back into its folder wherever that model is installed
   (``recorded_folder``); a folder of the user's own is recorded by its absolute path (policy 1).
3. A file written to be shared (``lowdim export``, every format) records no absolute path: a local base model by
   its folder's (or file's) name; a hub id or a registered model's name as it is.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

# The key a shipped file's record names the model that ships it by (policy 2).
SHIPPED_WITH = "shipped_with"


def shipping_model(path: str | os.PathLike) -> str | None:
    """The registered model whose backend ships the file at ``path`` as its default hypernetwork (``tinyfaces``),
    reached by any path or link; None for any other file (the user's own, a copy of the shipped one included)."""
    from lowdim.registry import get_registry
    from lowdim_sd.personalize_hypernet import default_hypernet

    here = Path(path).resolve()
    for name, entry in get_registry().backends.items():  # aliases repeat a backend: the first answers
        shipped = default_hypernet(entry.value)
        if shipped is not None and shipped.resolve() == here:
            return str(getattr(entry.value, "name", None) or name)
    return None


def recorded_file(path: str | os.PathLike) -> dict[str, str]:
    """How a file that stays on this machine records the file at ``path``, links followed: ``{"file": its own name,
    "shipped_with": the model}`` for a file a model ships (policy 2), else ``{"file": its absolute path}``, so it
    is found from any folder (policy 1)."""
    here = Path(path).resolve()
    model = shipping_model(here)
    return {"file": here.name, SHIPPED_WITH: model} if model is not None else {"file": str(here)}


def shipped_file(model: str) -> Path | None:
    """The file the registered model ``model`` ships as its default hypernetwork, where this install put it; None
    where no model of that name is registered here or it ships none."""
    from lowdim.registry import get_registry
    from lowdim_sd.personalize_hypernet import default_hypernet

    entry = get_registry().backends.get(model)
    return default_hypernet(entry.value) if entry is not None else None


def recorded_path(record: object) -> str | None:
    """Where a record of a file points on this machine, absolute and links followed, so two records of one file
    compare equal however each spells it: ``recorded_file``'s (a shipped file by where this install put the model's
    file; the name and model as text where no model here ships one) and an older record's plain path (taken from
    the working folder, as it was given). None for no record."""
    if isinstance(record, dict) and isinstance(record.get("file"), str):
        model = record.get(SHIPPED_WITH)
        if isinstance(model, str) and model:
            shipped = shipped_file(model)
            return _real(str(shipped)) if shipped is not None else f"{record['file']} shipped with {model}"
        record = record["file"]
    return _real(record) if isinstance(record, str) and record else None


def _real(path: str) -> str:
    """``path`` absolute with its links followed; as it is where it cannot be (a NUL in a stranger's record)."""
    try:
        return os.path.realpath(os.path.expanduser(path))
    except (OSError, ValueError):
        return path


def recorded_text(record: object) -> str:
    """A record of a file as a line names it: 'the network shipped with tinyfaces (hypernet.safetensors)' for a
    shipped one, the path of any other, an older record's plain path as it is."""
    if isinstance(record, dict):
        model, name = record.get(SHIPPED_WITH), record.get("file")
        if isinstance(model, str) and model:
            return f"the network shipped with {model}" + (f" ({name})" if isinstance(name, str) and name else "")
        return str(name)
    return str(record)


def shipped_text(record: object) -> str | None:
    """What ``lowdim show`` says of a record ``recorded_file`` made for a shipped file, the rest of the record
    after it: 'the network shipped with tinyfaces (hypernet.safetensors) {"digest":...}'; None for any other
    record (a user's file, by its absolute path, and every older record are shown as they are)."""
    if not isinstance(record, dict) or not isinstance(record.get(SHIPPED_WITH), str) or not record[SHIPPED_WITH]:
        return None
    import json

    rest = {key: value for key, value in record.items() if key not in ("file", SHIPPED_WITH)}
    named = f" ({record['file']})" if isinstance(record.get("file"), str) and record["file"] else ""
    return (f"the network shipped with {record[SHIPPED_WITH]}{named} "
            f"{json.dumps(rest, separators=(',', ':'), sort_keys=True)}")


def shared_model_name(model: str) -> str:
    """How a file written to be shared records its base model (policy 3): a local folder or file by its name
    (``/home/alice/models/my-sd`` -> ``my-sd``), a path however written (absolute, ``~``, ``./``, a Windows drive);
    a hub id (``org/name``) or a registered model's name as it is."""
    if not model or not _is_a_path(model):
        return model
    return PureWindowsPath(model.rstrip("/\\")).name or model  # PureWindowsPath splits at '/' and '\\' alike


def _is_a_path(model: str) -> bool:
    """Whether a recorded model is a path, not a hub id: a hub id never starts with '/', '~' or '.' nor holds '\\'
    or a drive."""
    return (PurePosixPath(model).is_absolute() or PureWindowsPath(model).is_absolute() or "\\" in model
            or model.startswith(("~", "./", "../")) or model in (".", ".."))


def recorded_folder(folder: str | os.PathLike) -> str:
    """How a file that stays on this machine records a model folder it needs (a merged model's configs): a
    registered SD1.x model's own folder by that model's name (policy 2), which the registry finds wherever the model
    is installed; any other folder by its absolute path, links followed (policy 1)."""
    here = Path(folder).resolve()
    return registered_model_of(here) or str(here)


def registered_model_of(folder: Path) -> str | None:
    """The registered SD1.x model whose own folder ``folder`` is: its source folder (TinyFaces'), or the snapshot
    of its hub id in the Hugging Face cache (sd15's); None for any other folder, or one two models share."""
    from lowdim.registry import get_registry
    from lowdim_sd.plugin import SDBackend
    from lowdim_sd.registered_models import registered_entry

    entry = registered_entry(str(folder))  # a registered model's source folder, by any path or link
    if entry is not None:
        return str(entry.value.name)
    if folder.parent.name != "snapshots":  # models--org--name/snapshots/<revision>: the cache's own layout
        return None
    # The cache folder's name spelt here: huggingface_hub's repo_folder_name refuses a source that is a folder path
    backends = (registered.value for registered in get_registry().backends.values())
    names = {backend.name for backend in backends
             if isinstance(backend, SDBackend) and isinstance(getattr(backend, "source", None), str)
             and folder.parent.parent.name == "models--" + backend.source.replace("/", "--")}
    return names.pop() if len(names) == 1 else None


def is_recorded_name(record: str) -> bool:
    """Whether a recorded model or folder is a name (a registered model's, ``recorded_folder``'s) or a hub id,
    not a path: a path is recorded absolute."""
    return bool(record) and not _is_a_path(record)
