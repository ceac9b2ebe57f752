"""What ``lowdim show`` says of a whole model: a diffusers pipeline folder, a model registered by name (``lowdim
models``), and a model `lowdim merge` or `lowdim train --full` wrote, which is drawn with, not personalized on.

Their texts come from files and plugins a stranger may have written (a 100 KB class name in ``model_index.json``, a
description holding an escape code): each row shows them bounded and escaped, ``--json`` whole."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.option_words import counted
from lowdim.paths import expand_user
from lowdim_sd.file_info_parts import (
    FileInfo,
    bounded,
    command_word,
    compact,
    listing,
    one_line,
    parsed_json,
    part,
    shown_whole,
    size_text,
)
from lowdim_sd.model_names import CONFIGS_KEY, is_model_folder, is_recorded_name, registered_source

if TYPE_CHECKING:
    from lowdim.backends import Backend

# What DiffusionPipeline.from_pretrained loads a folder with when its index names no class the table can show: it
# reads the class from the index itself.
DIFFUSERS_LOADER = "DiffusionPipeline"


def pipeline_folder_info(folder: Path) -> FileInfo:
    """A diffusers folder (``model_index.json`` beside its parts): its pipeline class, and what lowdim merge or
    train --full recorded of it; --json's ``pipeline`` is the class name whole."""
    index = parsed_json((folder / "model_index.json").read_text(errors="replace"), {})
    pipeline = str(index.get("_class_name", "?")) if isinstance(index, dict) else "?"
    rows = [("pipeline", bounded(pipeline))]
    values: dict[str, object] = {"pipeline": pipeline}  # the class name whole
    from lowdim_sd.merged_model import read_merge_record

    if (record := read_merge_record(folder)) is not None and record.get("made_by") == TRAINED:
        return _trained(folder, record, rows, values)
    if (problem := _folder_problem(folder)) is not None:  # every load refuses it: no command to suggest
        return FileInfo(folder, "a diffusers pipeline folder lowdim cannot load", [*rows, ("problem", problem)],
                        values=values, type="pipeline_folder")
    if record is not None:
        return merged_model_info(folder, "a whole model lowdim merge wrote (diffusers folder)", record, rows, values)
    return FileInfo(folder, "a diffusers pipeline folder", rows,
                    f"lowdim personalize -m {quote(str(folder))} -i face.jpg -o me", values, type="pipeline_folder")


def pipeline_part_info(folder: Path, pipeline: Path) -> FileInfo:
    """A part folder of a diffusers pipeline (``pipeline_holding``: its unet/, vae/, text_encoder/...), no model of its
    own: the class the pipeline's index names for it, the .safetensors files it holds, and the pipeline's use line."""
    name = Path(os.path.abspath(folder)).name
    files = sorted(file for file in folder.glob("*.safetensors") if file.is_file())
    rows = [("weight files", listing([f"{part(file.name)} ({size_text(file)})" for file in files]) or "none")]
    values: dict[str, object] = {"weight files": [{"file": file.name, "bytes": file.stat().st_size} for file in files]}
    return _as_part(folder, f"the {name} part of the diffusers pipeline {one_line(str(pipeline))}", name, pipeline,
                    rows, values)


def part_weights_info(path: Path, rows: list[tuple[str, str]], values: dict[str, object]) -> FileInfo | None:
    """The weights of a diffusers pipeline's part (``unet/diffusion_pytorch_model.safetensors``: a file under the name
    diffusers reads for the class the pipeline's index names there, a shard or the fp16 variant too), said as its
    pipeline's; None for any other file. ``rows`` and ``values``: its tensors and size, as any file's."""
    from lowdim_sd.model_tree import pipeline_holding
    from lowdim_sd.pipeline_parts import WEIGHTS_NAMES

    pipeline = pipeline_holding(path.parent)
    if pipeline is None:
        return None
    name = Path(os.path.abspath(path.parent)).name
    library, _ = _listed_class(pipeline, name)
    stem = WEIGHTS_NAMES.get(library)
    if stem is None or not re.fullmatch(rf"{re.escape(stem)}(\.fp16)?(-\d+-of-\d+)?\.safetensors", path.name):
        return None  # a file diffusers never reads: not the part's weights, whatever it holds
    return _as_part(path, f"the {name} weights of the diffusers pipeline {one_line(str(pipeline))}", name, pipeline,
                    rows, values)


def _as_part(path: Path, kind: str, name: str, pipeline: Path, rows: list[tuple[str, str]],
             values: dict[str, object]) -> FileInfo:
    """A part of ``pipeline`` (its folder or its weights): the pipeline and the part's class first, why the pipeline
    cannot be loaded where it cannot, and the command that uses the pipeline, which is what a part is loaded with."""
    whole = pipeline_folder_info(pipeline)
    library, class_name = _listed_class(pipeline, name)
    pipeline_class = str(whole.values.get("pipeline", "?"))
    rows = [("pipeline", f"{part(str(pipeline))} ({bounded(pipeline_class)})"),
            ("part", f"{part(name)}: {bounded(class_name)} ({bounded(library)})"), *rows]
    values = {**values, "pipeline": {"folder": str(pipeline), "class": pipeline_class},
              "part": {"name": name, "class": class_name, "library": library}}
    if (problem := dict(whole.rows).get("problem")) is not None:  # every load of the pipeline refuses it
        rows.insert(0, ("problem", f"its pipeline cannot be loaded: {problem}"))
    return FileInfo(path, kind, rows, whole.use or f"lowdim show {quote(str(pipeline))}", values,
                    type="pipeline_part")


def _listed_class(pipeline: Path, name: str) -> tuple[str, str]:
    """(library, class) the pipeline's ``model_index.json`` names for its part ``name`` ('?' where it names none)."""
    index = parsed_json((pipeline / "model_index.json").read_text(errors="replace"), {})
    entry = index.get(name) if isinstance(index, dict) else None
    if isinstance(entry, list) and len(entry) == 2:
        return str(entry[0]), str(entry[1])
    return "?", "?"


def _folder_problem(folder: Path) -> str | None:
    """What the load refuses the folder for before diffusers reads it (another pipeline, a missing part, pickle
    weights, a weight file cut short, a config that does not fit its weights or the other parts), as its one line;
    None when those checks pass. The weights are judged from their headers only."""
    from lowdim_sd.pipeline_parts import check_model_folder

    try:
        check_model_folder(folder)
    except LowdimError as error:
        return str(error)
    return None


def registered_model_info(name: str) -> FileInfo | None:
    """A model registered as ``name``: where its files are (what diffusers' ``from_pretrained`` takes), read
    from the registry and the folder's index alone; None when no model has that name. A plugin's texts (its
    description, its source) are shown bounded and escaped, --json whole."""
    from lowdim.registry import get_registry
    from lowdim_sd.plugin import SDBackend

    entry = get_registry().backend_entry(name)  # a name two plugins claim: the line saying to uninstall one
    if entry is None:
        return None
    backend = entry.value
    source = str(getattr(backend, "source", "") or "")
    folder = expand_user(source)
    where = _source_kind(folder) if source else "none"
    pipeline = pipeline_folder_info(folder) if where == "pipeline" else None
    texts = [*_backend_texts(name, entry.plugin, backend), *_files_texts(source, folder, where)]
    if default := str(getattr(backend, "default_hypernet", None) or ""):
        texts.append(("default hypernetwork", default, ""))
    # A generic (not SD1.x) backend: the face commands would refuse it, inspect counts on it.
    sd = isinstance(backend, SDBackend)
    use = f"lowdim {'personalize' if sd else 'inspect'} -m {quote(name)} {'-i face.jpg -o me' if sd else '-s lidb'}"
    if pipeline is not None:  # a merged folder is drawn with, not personalized: keep its command, under the name
        use = pipeline.use.replace(f"-m {quote(str(folder))}", f"-m {quote(name)}", 1)
    rows, values = _model_rows(texts, pipeline, folder)
    # The title, one line: a plugin's name as the rows show it (100 KB cut, a line break escaped); --json's "alias
    # of" keeps it whole.
    return FileInfo(Path(name), f"the registered model {part(str(backend.name))} (lowdim models)", rows, use, values,
                    type="registered_model")


def _backend_texts(name: str, plugin: str, backend: Backend) -> list[tuple[str, str, str]]:
    """The (label, text, note) of who registered the model, what it is an alias of and its description."""
    texts = [("registered by", _registrar(plugin), "")]
    if backend.name != name:
        texts.append(("alias of", backend.name, ""))
    if description := str(getattr(backend, "description", "") or ""):
        texts.append(("description", description, ""))
    return texts


def _files_texts(source: str, folder: Path, where: str) -> list[tuple[str, str, str]]:
    """The (label, text, note) of where a registered model's files are: its folder, its hub id, or its code."""
    if where == "pipeline":
        return [("files", str(folder), "")]
    if where == "other":
        return [("files", str(folder), " (not a diffusers folder: no model_index.json)")]
    if where == "missing" and (folder.is_absolute() or source.startswith((".", "~"))):
        return [("files", str(folder), " (missing: no such folder)")]
    if source:
        return [("hub id", source, ""), ("in diffusers", _diffusers_code("StableDiffusionPipeline", source), ""),
                ("cached at", _hub_cache(source), "")]
    return [("files", "none: built from its code", "")]


def _model_rows(texts: list[tuple[str, str, str]], pipeline: FileInfo | None,
                folder: Path) -> tuple[list[tuple[str, str]], dict[str, object]]:
    """The rows (each text bounded) and --json values (whole); a pipeline folder's own rows follow "files"."""
    rows = [(label, f"{part(text)}{note}") for label, text, note in texts]
    values: dict[str, object] = {label: f"{text}{note}" for label, text, note in texts}
    if pipeline is not None:
        at = [label for label, _ in rows].index("files") + 1
        loader = str(pipeline.values.get("pipeline", "?"))
        loader = loader if loader != "?" and shown_whole(loader) else DIFFUSERS_LOADER  # code a user can copy
        code = _diffusers_code(loader, str(folder))
        rows[at:at] = [*pipeline.rows, ("in diffusers", bounded(code))]
        values |= {**pipeline.values, "in diffusers": code}
    return rows, values


def _registrar(plugin: str) -> str:
    """Who registered a model, in `lowdim models`' word: lowdim's own backend (its `sd` entry point) is builtin."""
    from lowdim.plugins import BUILTIN_NAMES, is_lowdims_own
    from lowdim.registry import get_registry

    if is_lowdims_own(get_registry().manager, plugin):
        return BUILTIN_NAMES["lowdim.spaces.builtin"]
    return f"the plugin {plugin}"


def _source_kind(folder: Path) -> str:
    """'pipeline' (a diffusers folder), 'other' (something else is there) or 'missing'. A path no file system
    takes (a name past 255 bytes, a path past 4,096) is missing, not the OSError of looking."""
    try:
        if folder.is_dir() and (folder / "model_index.json").is_file():
            return "pipeline"
        return "other" if folder.exists() else "missing"
    except OSError:
        return "missing"


def _diffusers_code(loader: str, source: str) -> str:
    return f"{loader}.from_pretrained({json.dumps(source)})"


def _hub_cache(hub_id: str) -> str:
    """The local snapshot folder of a hub model when diffusers already downloaded it (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(hub_id, "model_index.json")
    except Exception:  # a hub id the hub's own validation rejects is just not cached
        found = None
    if isinstance(found, str):
        return str(Path(found).parent)
    return "not yet: the first command that uses it downloads it into the Hugging Face cache"


def merged_model_info(path: Path, kind: str, record: object, rows: list[tuple[str, str]],
                      values: dict[str, object] | None = None) -> FileInfo:
    """A merged model: its adapters are in its weights, so it is drawn with, not personalized on top of."""
    record = record if isinstance(record, dict) else {}
    entries = [entry for entry in record.get("adapters", []) if isinstance(entry, dict)]
    # Texts from the record, each cut where a stranger's runs to 100 KB, and the first few of a long list;
    # --json gives them all, whole.
    merged = [f"{bounded(str(entry.get('file')))} at {bounded(str(entry.get('scale')))}" for entry in entries]
    tokens = [str(token) for token in record.get("tokens", [])]
    base = str(record.get("base_model") or "?")
    rows = [("base model", bounded(base)),
            ("adapters merged", listing(merged) or "? (merged before lowdim recorded them)"),
            ("token", listing(list(map(bounded, tokens))) or "?"), *rows]
    values = {**(values or {}), "base model": base, "token": tokens,
              "adapters merged": [{"file": entry.get("file"), "scale": entry.get("scale")} for entry in entries]}
    configs, flag = _base_configs(record)
    if configs is not None:
        rows.insert(1, ("base configs", configs))
        values["base configs"] = record[CONFIGS_KEY]
    return FileInfo(path, kind, rows,
                    f"lowdim generate -m {quote(str(path))}{flag} -p {_prompt_word(record, tokens)}", values,
                    type="merged_model")


def _base_configs(record: dict) -> tuple[str | None, str]:
    """The configs folder a merge of a single file recorded (where its base's configs were read from), as its row
    shows it, and the flag its use line needs: none while it is a model folder, ``--model-config`` once it moved."""
    folder = record.get(CONFIGS_KEY)
    if not (isinstance(folder, str) and folder):
        return None, ""
    if is_recorded_name(folder):  # a registered model's configs, by its name: wherever that model is installed
        source = registered_source(folder)
        if source is not None:
            return f"{bounded(folder)} (the registered model's, here {bounded(source)})", ""
        return f"{bounded(folder)} (a registered model's, not registered here: draw with --model-config FOLDER)", \
            " --model-config FOLDER"
    if is_model_folder(folder):
        return bounded(folder), ""
    return f"{bounded(folder)} (no model folder there any more: draw with --model-config FOLDER)", \
        " --model-config FOLDER"


TRAINED = "lowdim train --full"  # the maker a trained model's record names (lowdim_sd.modes.record_recipe)


def _recorded_count(record: dict, key: str, noun: str) -> str:
    """'1 image', '4 images' for a count the record holds; a stranger's non-number as it is (cut), with 'noun(s)'."""
    value = record.get(key, "?")
    if isinstance(value, int) and not isinstance(value, bool):
        return counted(value, noun)
    return f"{bounded(str(value))} {noun}(s)"


def _trained(folder: Path, record: dict, rows: list[tuple[str, str]], values: dict[str, object]) -> FileInfo:
    """A model `lowdim train --full` wrote: its base, its word and how it trained, drawn with as a merged one is."""
    tokens = [str(token) for token in record.get("tokens", [])]
    parts = "UNet and text encoder" if record.get("text_encoder_trained") else "UNet"
    # Texts from the record, each cut where a stranger's runs to 100 KB; --json gives them whole.
    steps, rate = (bounded(str(record.get(key, "?"))) for key in ("steps", "learning_rate"))
    prompt = record.get("prompt", "?")
    prompt = prompt if isinstance(prompt, str) else compact(prompt)
    # the same seed gives the same bytes only on as many threads: said whenever the record has them
    threads = f", {_recorded_count(record, 'threads', 'CPU thread')}" if "threads" in record else ""
    trained = (f"{steps} steps at lr {rate} on {_recorded_count(record, 'images', 'image')}{threads}, {parts}; "
               f"prompt {repr(prompt) if bounded(prompt) == prompt else bounded(prompt)}")  # quoted, as a cut one is
    base = str(record.get("base_model") or "?")
    rows = [("base model", bounded(base)), ("token", listing(list(map(bounded, tokens))) or "?"),
            ("trained", trained), *rows]
    recipe = ("steps", "learning_rate", "images", "prompt", "text_encoder_trained", "threads")
    values = {**values, "base model": base, "token": tokens, "trained": {key: record.get(key) for key in recipe}}
    return FileInfo(folder, f"a whole model {TRAINED} wrote (diffusers folder)", rows,
                    f"lowdim generate -m {quote(str(folder))} -p {_prompt_word(record, tokens)}", values,
                    type="full_model")


def _prompt_word(record: dict, tokens: list[str]) -> str:
    """The prompt of a merged or trained model's use line, quoted; PROMPT where the table could not show it as it
    is (a 100 KB or escape-holding token or prompt), as no such word is one a user can copy."""
    return command_word(_merged_prompt(record, tokens), "PROMPT")


def _merged_prompt(record: dict, tokens: list[str]) -> str:
    """The prompt merge suggested, which its record keeps; for a merge recorded before that, its token in the
    phrase an adapter without a recipe learned."""
    prompt = record.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return prompt
    return f"a {tokens[0]} face" if tokens else "a photo of a face"
