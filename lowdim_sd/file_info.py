"""``lowdim show``: what a file or folder is, read from its header alone (no tensor is loaded).

A 50 KB adapter passed around without its command line says nothing by its name: which space, which
model, which token, how it was made. Every lowdim file carries that in its safetensors metadata; this
reads it back as (field, value) rows, with the command that uses the file.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from shlex import quote

from lowdim.errors import LowdimError, first_line
from lowdim.file_reading import PICKLE_SUFFIXES, not_a_file
from lowdim.foreign_files import describe_foreign, embedding_style, fix_for, foreign_lora
from lowdim_sd.adapter_info import describe_adapter
from lowdim_sd.checkpoint_file_info import (
    is_optimizer_state,
    is_step_folder,
    is_trained_state,
    optimizer_state_info,
    saves,
    step_folder_info,
    trained_state_info,
)
from lowdim_sd.file_info_parts import (
    VALUES_NOT_CHECKED,
    FileInfo,
    Header,
    bounded,
    command_word,
    compact,
    config_object,
    hypernet_problem,
    hypernet_values_problem,
    json_key,
    json_object,
    listing,
    number,
    one_line,
    parsed_json,
    part,
    read_header,
    shown_whole,
    size_text,
    space_object,
    text_rows,
)
from lowdim_sd.image_names import IMAGE_EXTENSIONS
from lowdim_sd.model_info import (
    merged_model_info,
    part_weights_info,
    pipeline_folder_info,
    pipeline_part_info,
    registered_model_info,
)
from lowdim_sd.model_paths import UNET_PREFIX
from lowdim_sd.run_folder_info import checkpoints_folder, checkpoints_folder_info, checkpoints_left, run_folder_info
from lowdim_sd.stopped_precompute_info import batch_folder_info, in_batch_folder, is_batch_folder
from lowdim_sd.weight_folder_info import weight_folder_info

Rows = list[tuple[str, str]]  # a file's (label, text) rows, as FileInfo shows them


def describe(path: Path) -> FileInfo:
    """What ``path`` is: a lowdim adapter, hypernetwork, weight folder or shard, feature file, another tool's
    LoRA, an SD checkpoint or a registered model name (``lowdim models``); anything else is one LowdimError
    naming it. A checkpoint in precompute's batch folder is said as precompute's, which its rerun resumes."""
    return in_batch_folder(_described(Path(path)))


def _described(path: Path) -> FileInfo:
    """What ``describe`` says of ``path`` before it checks for precompute's batch folder: a folder by what it
    holds, a registered model name, then a file by the ``format`` its header records."""
    if path.is_dir():
        return _folder_info(path)
    if not path.exists():  # a path on disk wins over a model registered under the same name
        model = registered_model_info(str(path))
        if model is not None:
            return model
    _refuse_non_lowdim_file(path)
    header = read_header(path)
    readers = {"lowdim.adapter": describe_adapter, "lowdim.hypernet": _hypernet, "lowdim.encoder_features": _features,
               "lowdim.weights.shard": _shard}
    reader = readers.get(header.metadata.get("format", ""), _other)
    try:
        return reader(path, header)
    except (TypeError, ValueError, KeyError, AttributeError) as error:  # metadata edited or cut by hand
        raise LowdimError(f"{path}: its lowdim metadata is damaged ({type(error).__name__}: "
                          f"{first_line(error)})") from None


def _folder_info(path: Path) -> FileInfo:
    """What a folder is, by what it holds, checked from the most particular: precompute's batch folder, a step
    checkpoint, a command's --out, a diffusers pipeline, a stopped run's --out, a part of a pipeline or run, else
    a weight folder (or one LowdimError saying its index is damaged)."""
    if is_batch_folder(path):  # precompute's: before the train checkpoints it holds
        return batch_folder_info(path)
    if is_step_folder(path):  # a train-hypernet one holds a hypernetwork: its checkpoint first
        return step_folder_info(path)
    for output in ("adapter.safetensors", "hypernet.safetensors"):  # the --out folder of personalize, train...
        if (path / output).is_file() and not (path / "index.json").is_file():
            return checkpoints_left(describe(path / output), path)
    if (path / "model_index.json").is_file():
        return pipeline_folder_info(path)
    if not _weight_folder(path) and saves(path):  # a stopped run's --out, or a killed one's
        return run_folder_info(path)
    if not _weight_folder(path) and (part_of := _part_of(path)) is not None:
        return part_of
    try:
        return weight_folder_info(path)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise LowdimError(f"{path}: its index is damaged ({type(error).__name__}: {first_line(error)})") from None


def _refuse_non_lowdim_file(path: Path) -> None:
    """One LowdimError for a path that is no .safetensors file show reads: none there, no file (a FIFO, a link
    loop), a weight folder's index, a pickle, a picture or a text file; nothing for any other file."""
    if not path.is_file():
        if (what := not_a_file(path)) is not None:  # there, but no file: a link loop, a FIFO
            raise LowdimError(f"{path}: {what}; `lowdim show` reads lowdim files and weight folders")
        raise LowdimError(f"{path}: no such file or folder{_model_meant(str(path)) if not path.exists() else ''}")
    if path.name == "index.json" or path.name.startswith("index-p"):
        raise LowdimError(f"{path}: a weight folder's index; show the folder: lowdim show {quote(str(path.parent))}")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise LowdimError(f"{path}: a pickle file, which can run code when loaded; lowdim reads .safetensors only")
    foreign = describe_foreign(path)  # a picture or a text file by its bytes, whatever its name
    if foreign is not None:
        advice = fix_for(foreign, "`lowdim show` reads lowdim files and weight folders")
        raise LowdimError(f"{path}: {foreign}; {advice}")
    if path.suffix.lower() in IMAGE_EXTENSIONS:  # by its name only: bytes no reader knows
        raise LowdimError(f"{path}: an image, not a .safetensors file; `lowdim show` reads lowdim files and weight "
                          f"folders")


def _weight_folder(folder: Path) -> bool:
    return (folder / "index.json").is_file() or any(folder.glob("index-p*.json"))


def _part_of(folder: Path) -> FileInfo | None:
    """A folder that is a part of what show reads: a diffusers pipeline's unet/ (or any part it lists), a run's
    checkpoints/; None for any other (``weight_folder_info`` says what it is not)."""
    from lowdim_sd.model_tree import pipeline_holding  # it imports torch: only for a folder

    if (pipeline := pipeline_holding(folder)) is not None:
        return pipeline_part_info(folder, pipeline)
    if (checkpoints := checkpoints_folder(folder)) is not None:
        return checkpoints_folder_info(checkpoints)
    return None


def _model_meant(name: str) -> str:
    """'; did you mean NAME?' when a bare word is close to a registered model's name: the suggestion
    `personalize -m` gives (``lowdim_sd.loading.refuse_a_misspelt_name``, with its cutoff)."""
    from lowdim.plugins import NO_PLUGINS_NOTE, plugins_disabled
    from lowdim.registry import get_registry

    if "/" in name or os.sep in name:
        return ""
    if plugins_disabled():  # no model is registered: a model's name is not there to be found
        return f"; {NO_PLUGINS_NOTE}"
    close = difflib.get_close_matches(name.lower(), list(get_registry().backends), n=1, cutoff=0.75)
    # a plugin's name, hundreds of characters long where a stranger registered it: cut as a row's text is
    return f"; did you mean {part(close[0])}? (a registered model: `lowdim models` lists them)" if close else ""


def _hypernet(path: Path, header: Header) -> FileInfo:
    meta = header.metadata
    config, extra = json_object(meta.get("hyper_config")), json_object(meta.get("extra"))
    layers = parsed_json(meta.get("layers"), [])
    layers = layers if isinstance(layers, list) else []
    stored = config.get("encoder_config")  # set: a network of that config (the hub id is then a label only)
    if isinstance(stored, dict) and meta.get("encoder_weights") != "package":
        kind = f"{stored.get('model_type', '?')}, hidden {stored.get('hidden_size')}"
        named = meta.get("encoder") or ""  # the config's name or the caller's label; lowdim.hyper.storage's
        called = f" '{named}'" if named and named != "inline config" else ""  # INLINE_CONFIG says it had none
        encoder = f"random-init from its stored config{called} ({kind})"
    else:
        encoder = meta.get("encoder") or "?"
    where = "weights from its package" if meta.get("encoder_weights") == "package" else "weights in the file"
    network = _network_fields(config)
    # Texts from the file, each cut where a stranger's runs to 100 KB; --json gives them whole.
    rows = [("predicts", f"{bounded(meta.get('space', '?'))} {bounded(meta.get('space_config', ''))} on "
                         f"{len(layers)} layers ({bounded(meta.get('layer_set') or '?')})"),
            ("for model", bounded(meta.get("model") or "?")),
            ("image encoder", f"{bounded(encoder)} ({where})"),
            ("network", ", ".join(f"{key} {value}" for key, value in network.items())),
            ("file", f"{size_text(path)}, {header.values:,} stored values")]
    rows += [(f"training: {key}", bounded(compact(value))) for key, value in extra.items()]
    from lowdim_sd.hypernet_folders import run_records  # inside: it imports PIL, which show of an adapter lacks

    run_rows, run_values = run_records(path, extra.get("steps"))  # split.json, metrics.jsonl beside it
    rows += run_rows
    predicts = {"space": meta.get("space"), "config": config_object(meta.get("space_config", "")),
                "layers": len(layers), "layer_set": meta.get("layer_set") or None}
    values = {"predicts": predicts, "network": network, "for model": meta.get("model") or "?",
              "image encoder": f"{encoder} ({where})",
              "file": {"bytes": path.stat().st_size, "stored_values": header.values},
              **{f"training: {key}": value for key, value in extra.items()}, **_keyed(run_values)}
    problem = hypernet_problem(path, header) or hypernet_values_problem(path)  # None: values not all read
    if problem is None:
        rows.append(("values", VALUES_NOT_CHECKED))
    if problem:  # every load refuses it: no command to suggest
        rows.insert(0, ("problem", problem))
    return FileInfo(path, "a lowdim hypernetwork", rows, "" if problem else _hypernet_use(path, meta), values,
                    type="hypernetwork")


def _keyed(run_values: dict[str, object]) -> dict[str, object]:
    """The run's records for --json with lowdim's own keys in its identity counts ("held out" -> "held_out"); the
    last validation's are metrics.jsonl's, as the run wrote them."""
    counts = run_values.get("identities")
    if not isinstance(counts, dict):
        return run_values
    return {**run_values, "identities": {json_key(key): count for key, count in counts.items()}}


def _hypernet_use(path: Path, meta: dict) -> str:
    """personalize with the network; in its run's folder, on a picture of an identity the run held out (an honest
    first try: a face it never trained on), where that is on disk; else on the example face.jpg."""
    from lowdim_sd.hypernet_folders import held_out_picture

    model = command_word(meta.get("model") or "", "MODEL")  # a name the table cuts or escapes is no word to copy
    picture = held_out_picture(path, json_object(meta.get("extra")).get("weights"))
    face = quote(str(picture)) if picture is not None else "face.jpg"
    return f"lowdim personalize -m {model} --hypernet {quote(str(path))}{_target_flags(meta)} -i {face} -o me"


# What describes each head: a retrieval head has a bank of identities and keys, no decoder to iterate.
NETWORK_FIELDS = {"transformer": ("architecture", "width", "decoder_layers", "iterations"),
                  "retrieval": ("architecture", "bank_size", "key_dim", "encoder_pool")}


def _network_fields(config: dict) -> dict:
    fields = NETWORK_FIELDS.get(str(config.get("architecture", "transformer")), NETWORK_FIELDS["transformer"])
    return {key: config[key] for key in fields if key in config}


def _target_flags(meta: dict) -> str:
    """The --space/--set and --layers personalize needs for this file where they are not its defaults (lidb with
    its default options; the model's default layer set), so the use line runs as printed."""
    from lowdim.hyper.storage import space_flags
    from lowdim_sd.registered_models import model_layer_set

    flags = ""
    space = space_flags(str(meta.get("space") or "lidb"), config_object(meta.get("space_config", "")) or {})
    if space != "--space lidb":  # options the table cuts (a 100 KB value) are no words to copy
        flags += f" {space if shown_whole(space) else '--space SPACE'}"
    layer_set, model = meta.get("layer_set"), meta.get("model") or ""
    try:  # a name the table cuts is looked up nowhere: past 255 bytes no file system takes it
        default = model_layer_set(None, model or None).name if shown_whole(model) else None
    except (LowdimError, OSError):  # a model this install does not know: name the set, which is never wrong
        default = None
    if layer_set and layer_set != default:
        flags += f" --layers {command_word(layer_set, 'LAYERS')}"
    return flags


def _features(path: Path, header: Header) -> FileInfo:
    meta = header.metadata
    shape = header.shapes.get("features", ())
    # Texts from the file, each cut where a stranger's runs to 100 KB; --json gives them whole.
    rows, whole = text_rows(meta, {"encoder": "encoder", "input_size": "input size", "normalize": "normalize",
                                   "pool": "pool"})
    rows += [("images", f"{len(parsed_json(meta.get('keys'), [])):,}"),
             ("features", " x ".join(map(str, shape)) + " (fp16)"), ("file", size_text(path))]
    values = {**whole, **{key: parsed_json(meta.get(key), meta.get(key)) for key in ("normalize", "pool")}}
    values |= {"input size": number(meta.get("input_size")), "images": len(parsed_json(meta.get("keys"), [])),
               "features": {"shape": list(shape), "dtype": "fp16"}, "file": {"bytes": path.stat().st_size}}
    # A text the table cuts or escapes is no word to copy: a placeholder instead.
    encoder, pool = command_word(meta.get("encoder", ""), "ENCODER"), command_word(meta.get("pool", "0"), "POOL")
    return FileInfo(path, "a lowdim encoder-feature file (lowdim encoder-features)", rows,
                    f"lowdim train-hypernet -w WEIGHTS --encoder {encoder} --freeze-encoder --set encoder_pool={pool} "
                    f"--features {quote(str(path))}", values, type="encoder_features")


def _shard(path: Path, header: Header) -> FileInfo:
    rows_named = parsed_json(header.metadata.get("identities"), [])
    # A row a later precompute erased (its identity's pictures gone) is zeroed and its name blanked: no identity.
    names = [name for name in rows_named if name != ""]
    # The first few names, each cut where a stranger's runs to 10 KB; --json gives them all, whole.
    listed = f": {listing(list(map(bounded, names)))}" if names else ""
    rows = [("identities", f"{len(names)}{listed}")]
    erased = len(rows_named) - len(names)
    if erased:
        whose = "its name blanked: an identity" if erased == 1 else "their names blanked: identities"
        rows.append(("erased rows", f"{erased} (zeroed, {whose} whose pictures are gone, erased by a later "
                                    f"precompute)"))
    rows += [("tensors", f"{len(header.shapes)}"), ("file", size_text(path))]
    values = {"identities": names, **({"erased rows": erased} if erased else {}), "tensors": len(header.shapes),
              "file": {"bytes": path.stat().st_size}}
    return FileInfo(path, f"a shard of the weight folder {one_line(str(path.parent))} (lowdim precompute)", rows,
                    f"lowdim show {quote(str(path.parent))}", values, type="weight_shard")


def exported_by_lowdim(header: Header) -> bool:
    """Whether ``lowdim export`` wrote the file of ``header``: another tool's LoRA or embedding layout with the
    source adapter export records. What show calls "exported by lowdim", and all export's --overwrite replaces."""
    meta, keys = header.metadata, list(header.shapes)
    # a lowdim.* format is read as lowdim's own file, whatever else its header holds
    if not meta.get("source_adapter") or str(meta.get("format", "")).startswith("lowdim."):
        return False
    return embedding_style(keys, meta) is not None or foreign_lora(keys, meta) is not None


def _other(path: Path, header: Header) -> FileInfo:
    """A .safetensors file with no lowdim format key: a checkpoint's state, another tool's file, a whole model.
    Texts from the file are each cut where a stranger's runs to 100 KB; --json gives them whole."""
    if is_optimizer_state(header):  # a checkpoint's: its header has no format key of its own
        return optimizer_state_info(path, header)
    if is_trained_state(path):  # nor has the trained state beside it: known by its place
        return trained_state_info(path, header)
    keys = list(header.shapes)
    dtype = header.dtype(keys)  # the tensors' own, as an adapter's row gives it: an export's --save-dtype
    rows = [("tensors", f"{len(keys):,} holding {header.values:,} values"),
            ("file", f"{size_text(path)}, {dtype}" if dtype else size_text(path))]
    values: dict[str, object] = {"tensors": {"count": len(keys), "values": header.values},
                                 "file": {"bytes": path.stat().st_size, "dtype": dtype}}
    embedding = embedding_style(keys, header.metadata)
    if embedding is not None:
        return _embedding_info(path, header, embedding, rows, values)
    style = foreign_lora(keys, header.metadata)
    if style is not None:
        return _lora_info(path, header, style, rows, values)
    return _model_or_unknown(path, header.metadata, keys, rows, values)


def _embedding_info(path: Path, header: Header, embedding: str, rows: Rows, values: dict[str, object]) -> FileInfo:
    """A Textual Inversion embedding, lowdim's export or another tool's."""
    meta = header.metadata
    made = "exported by lowdim" if exported_by_lowdim(header) else "not made by lowdim"
    texts, whole = text_rows(meta, {**({"source_adapter": "exported from"} if meta.get("source_adapter") else {}),
                                    "token": "token", "vectors": "vectors"})
    return FileInfo(path, f"a Textual Inversion embedding ({embedding} format, {made})", [*texts, *rows],
                    "load it in diffusers (pipe.load_textual_inversion), A1111 or ComfyUI",
                    {**whole, **values, "vectors": number(meta.get("vectors"))},
                    type="textual_inversion_export" if made == "exported by lowdim" else "textual_inversion")


def _lora_info(path: Path, header: Header, style: str, rows: Rows, values: dict[str, object]) -> FileInfo:
    """A plain LoRA (kohya or diffusers keys): lowdim's export, with what it was exported from, or another tool's."""
    if not exported_by_lowdim(header):
        return FileInfo(path, f"a {style} LoRA (not made by lowdim)", rows,
                        "load it in diffusers (pipe.load_lora_weights), A1111 or ComfyUI", values, type="lora")
    meta = header.metadata
    texts, whole = text_rows(meta, {"source_adapter": "exported from", "rank": "rank", "base_model": "base model",
                                    "token": "token"})
    space = f"{bounded(meta.get('space') or '?')} {bounded(meta.get('space_config') or '')}".strip()
    rows = [texts[0], ("space", space), *texts[1:], *rows]
    where = "A1111 or ComfyUI, or diffusers" if style == "kohya" else "diffusers (ComfyUI wants --format kohya)"
    values = {**whole, **values, "space": space_object(meta.get("space"), meta.get("space_config")),
              "rank": number(meta.get("rank"))}
    return FileInfo(path, f"a {style} LoRA exported by lowdim", rows, f"load it in {where}", values,
                    type="lora_export")


def _model_or_unknown(path: Path, meta: dict[str, str], keys: list[str], rows: Rows,
                      values: dict[str, object]) -> FileInfo:
    """A whole model (lowdim's merge, a single-file checkpoint, a pipeline part's weights), or a file not known."""
    from lowdim_sd.merged_model import record_in_metadata  # it draws with diffusers: the sd extra

    if (record := record_in_metadata(meta)) is not None:
        return merged_model_info(path, "a whole model lowdim merge wrote (single file)", record, rows, values)
    if any(key.startswith(UNET_PREFIX) for key in keys):
        return FileInfo(path, "a Stable Diffusion checkpoint (single file)", rows,
                        f"lowdim personalize -m {quote(str(path))}{configs_flag()} -i face.jpg -o me", values,
                        type="sd_checkpoint")
    if (weights := part_weights_info(path, rows, values)) is not None:  # a pipeline's unet/ or text_encoder/ weights
        return weights
    return FileInfo(path, "a .safetensors file lowdim does not know", rows, values=values, type="unknown_safetensors")


def configs_flag() -> str:
    """Offline, a checkpoint naming no base model loads only with its configs from a local folder."""
    from huggingface_hub import constants

    return " --model-config FOLDER" if constants.HF_HUB_OFFLINE else ""
