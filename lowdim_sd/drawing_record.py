"""prompts.json's ``settings``: how ``lowdim generate`` drew a folder's pictures (the model, each adapter file at its
scale, the steps, the parts), what the grid's captions say of it, and what changed when a rerun into the same
folder replaces pictures drawn with other settings.

A local model and each adapter file are recorded by their absolute path, ``~`` expanded and links followed, so
the record names the same file whichever folder reads it (`lowdim eval` follows a merged model to its base) and
``./me/a.safetensors``, ``me/a.safetensors`` and a link to it are one file, not other settings."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim import json_text
from lowdim.paths import expand_user
from lowdim_sd.attached_files import AdapterArg, adapter_entries, adapters_on
from lowdim_sd.loading import SDModel

if TYPE_CHECKING:  # generate imports this module: its config, for the hints alone
    from lowdim_sd.generate import GenerateConfig


def identifier(config: GenerateConfig, tokens: Sequence[str] | None, taught: Sequence[str] | None = None) -> str:
    """The word [V] becomes: --token, else the first adapter's own, else the first word a merged model was
    taught (``SDModel.taught``), else 'sks'."""
    return config.token or next((t for t in [*(tokens or []), *(taught or [])] if t), "sks")


def drawing_record(model: SDModel, config: GenerateConfig, adapters: Sequence[AdapterArg] = (),
                   tokens: list[str] | None = None) -> dict:
    """How a folder's pictures were drawn. Two runs at other scales or parts otherwise leave folders that look
    alike, and `lowdim eval` scores could not be traced to the settings that earned them. No ``adapters``: every
    adapter on the model, which the pictures are drawn with (``attached_files.adapters_on``)."""
    tokens, adapters = tokens or [], adapter_entries(adapters)
    named = [tokens[index] if index < len(tokens) else "" for index in range(len(adapters))]
    listed: list[dict] = ([{"file": str(path), "scale": scale, "token": token}
                           for (path, scale), token in zip(adapters, named, strict=True)]
                          if adapters else adapters_on(model))
    listed = [{**entry, "file": file_as_recorded(entry["file"])} if entry["file"] is not None else entry
              for entry in listed]  # None: an adapter loaded by hand, whose file the model does not keep
    return {"model": model_as_recorded(model), "adapters": listed,
            "token": identifier(config, tokens, model.taught), "steps": config.steps, "guidance": config.guidance,
            "scheduler": config.scheduler, "negative_prompt": config.negative_prompt,
            "resolution": config.resolution or model.resolution, "parts": asdict(config.parts)}


def model_as_recorded(model: SDModel) -> str:
    """prompts.json's ``model``: a folder or file the model was loaded from as its absolute path; a registered
    name (its weights wherever its plugin keeps them) or a hub id as named."""
    if model.source != model.name:  # load_sd keeps a registered model's own name apart from what loads it
        return model.name
    path = expand_user(model.name)
    # load_pipeline's test of a local model: a file or a folder there, else a hub id
    return file_as_recorded(model.name) if path.is_file() or path.is_dir() else model.name


def file_as_recorded(path: str | os.PathLike[str]) -> str:
    """A local file or folder as prompts.json records it: absolute, ``~`` expanded, links followed."""
    where = expand_user(path)
    try:
        return str(where.resolve())
    except (OSError, RuntimeError):  # a loop of links: absolute, as written
        return str(where.absolute())


def drawn_tag(settings: dict) -> str:
    """How the adapters were drawn, as the personalize preview labels it ('scale 0.5', 'te=0@start=0.3'):
    empty for the plain draw. Two grids of the same prompts at other settings are otherwise alike."""
    from lowdim_sd.draw_parts import DrawParts, draw_text

    scales = [float(adapter["scale"]) for adapter in settings.get("adapters", [])
              if adapter.get("scale") is not None]  # None: loaded by hand, at a scale the model does not keep
    parts = DrawParts(**settings["parts"]) if scales and settings.get("parts") else DrawParts()
    tags = [f"scale {'/'.join(f'{s:g}' for s in scales)}" if any(s != 1.0 for s in scales) else ""]
    tags += [draw_text(1.0, parts) if not parts.whole else ""]
    return ", ".join(filter(None, tags))


def replaced_of_other_settings(out_dir: Path, names: list[str], settings: dict | None) -> tuple[int, str] | None:
    """(how many of ``names`` replace a picture the folder's prompts.json says was drawn with other settings, what
    changed); None when none does, or either run records no settings (nothing to compare)."""
    try:
        earlier = json_text.loads((out_dir / "prompts.json").read_text(encoding="utf-8"))
        before, listed = earlier["settings"], {entry["image"] for entry in earlier["images"]}
    except (OSError, ValueError, LookupError, TypeError):  # none, or not one lowdim wrote: no settings to compare
        return None
    now = json_text.loads(json.dumps(settings)) if settings is not None else None  # as it reads back: lists, not tuples
    if not isinstance(before, dict) or now is None:
        return None
    before = _paths_as_now(before, now)
    if before == now:
        return None
    count = sum(name in listed and (out_dir / name).is_file() for name in names)
    return (count, _changes(before, now)) if count else None


def _paths_as_now(before: dict, now: dict) -> dict:
    """``before`` with each path that names the file ``now``'s names in its place written as ``now`` writes it: a
    record from before paths were recorded absolute (``./me/a.safetensors``, read from here) is the same file."""
    same = dict(before)
    if _same_file(before.get("model"), now.get("model")):
        same["model"] = now["model"]
    earlier, current = before.get("adapters"), now.get("adapters")
    if isinstance(earlier, list) and isinstance(current, list) and len(earlier) == len(current):
        same["adapters"] = [{**old, "file": new["file"]}
                            if isinstance(old, dict) and isinstance(new, dict)
                            and _same_file(old.get("file"), new.get("file")) else old
                            for old, new in zip(earlier, current, strict=True)]
    return same


def _same_file(before: object, now: object) -> bool:
    return (isinstance(before, str) and isinstance(now, str) and before != now
            and file_as_recorded(before) == file_as_recorded(now))


def _changes(before: dict, now: dict) -> str:
    """'adapters me.safetensors:0.5 -> me.safetensors:1; steps 30 -> 10': the settings two records differ in."""
    def text(key: str, value: object) -> str:
        if key == "adapters" and isinstance(value, list):
            return ", ".join(_adapter_text(entry) for entry in value) or "none"
        if key == "model" and isinstance(value, str):
            return _shown(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    flat_before, flat_now = _flat(before), _flat(now)
    return "; ".join(f"{key} {text(key, flat_before.get(key))} -> {text(key, flat_now.get(key))}"
                     for key in dict.fromkeys([*flat_now, *flat_before]) if flat_before.get(key) != flat_now.get(key))


def _flat(settings: dict) -> dict:
    """The record with its parts' fields beside the others: 'text_encoder_scale 1 -> 0', not the parts whole."""
    parts = settings.get("parts")
    return {**{k: v for k, v in settings.items() if k != "parts"}, **(parts if isinstance(parts, dict) else {})}


def _adapter_text(entry: object) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    scale, file = entry.get("scale"), entry.get("file")
    return (_shown(file) if isinstance(file, str) else f"{file}") + (
        f":{scale:g}" if isinstance(scale, (int, float)) else "")


def _shown(path: str) -> str:
    """A recorded path as the warning shows it: from the working folder when it lies there (as it was likely
    typed), else whole."""
    try:
        return str(Path(path).relative_to(Path.cwd().resolve())) if Path(path).is_absolute() else path
    except (ValueError, OSError):  # elsewhere, or no working folder left
        return path
