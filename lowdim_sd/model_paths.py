"""A model file (``--model FILE``, ``load_sd(FILE)``) that is no SD1.x checkpoint: one line saying what the file
is and where it belongs, in its reader's words (option_words: the flag on the command line, the Python call
from Python).

Without this an image read as "no such model file or folder", a lowdim adapter as a network error (diffusers
looked its config up on the hub) and a truncated checkpoint as "offline?".
"""

from __future__ import annotations

from pathlib import Path

from lowdim.errors import first_line
from lowdim.foreign_files import describe_foreign, fix_for, foreign_lora
from lowdim.option_words import either, option
from lowdim.paths import expand_user
from lowdim_sd.image_names import IMAGE_EXTENSIONS

MODEL_KINDS = "a registered name (lowdim models), a hub id, a diffusers folder or a .safetensors checkpoint"
UNET_PREFIX = "model.diffusion_model."


def lowdim_file_kind(fmt: str, base: str) -> str | None:
    """What else lowdim writes as .safetensors, by the "format" in its metadata, and where it goes instead;
    ``base`` is ' (its base model)' or ''. None for any other format."""
    return {
        "lowdim.adapter": either(f"a lowdim adapter, not a model: pass it with --adapter (-a), and its base "
                                 f"model{base} with --model",
                                 f"a lowdim adapter, not a model: attach it to its base model{base} with "
                                 f"attach_adapters(model, [FILE])"),
        "lowdim.hypernet": "a lowdim hypernetwork, not a model: pass it " + either(
            "with --hypernet", f"as {option('hypernet', 'PersonalizeJob')}"),
        "lowdim.weights": "a shard of a lowdim weight dataset (lowdim precompute), not a model",
        "lowdim.encoder_features": "a lowdim encoder-feature cache, not a model",
    }.get(fmt)


def model_takes() -> str:
    """'--model takes a registered name (...), a hub id, ...' in its reader's words."""
    return f"{either('--model takes', 'a model is')} {MODEL_KINDS}"


def refuse_what_is_not_a_checkpoint(path: Path) -> None:
    """Raise ModelLoadError naming what ``path`` (an existing file) is, unless it may be an SD1.x checkpoint."""
    from lowdim_sd.loading import ModelLoadError

    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        raise ModelLoadError(f"{path}: an image, not a model; {model_takes()} (a face photo goes to "
                             f"{option('image', 'PersonalizeJob')})")
    if suffix != ".safetensors":
        raise ModelLoadError(f"{path}: not a model file; {model_takes()}")
    metadata, keys = _header(path)
    base = f" ({metadata['base_model']})" if metadata.get("base_model") else ""
    kind = lowdim_file_kind(metadata.get("format", ""), base)
    if kind is not None:
        raise ModelLoadError(f"{path}: {kind}")
    style = foreign_lora(keys, metadata)
    if style is not None:
        raise ModelLoadError(f"{path}: a {style} LoRA, not a model; {model_takes()}")
    if not any(key.startswith(UNET_PREFIX) for key in keys):
        raise ModelLoadError(f"{path}: no SD1.x UNet in it (no {UNET_PREFIX}* tensors), so not a model checkpoint; "
                             f"{model_takes()}")


def _header(path: Path) -> tuple[dict[str, str], list[str]]:
    from safetensors import safe_open

    from lowdim_sd.loading import ModelLoadError

    try:
        with safe_open(str(path), framework="pt") as file:
            return dict(file.metadata() or {}), list(file.keys())
    except Exception as error:  # safetensors raises its own error types for every way a file is broken
        # Asked only once safetensors refused the file: a whole checkpoint's header is read once.
        try:
            foreign = describe_foreign(path)
        except OSError:
            foreign = None
        if foreign is not None:  # cut short, most likely: how much is missing, not safetensors' words
            fix = fix_for(foreign, "pass a model checkpoint, or a diffusers folder")
            raise ModelLoadError(f"{path}: this is {foreign}; {fix}") from None
        raise ModelLoadError(f"{path}: not a readable .safetensors file, cut short or corrupt "
                             f"({first_line(error)})") from None


def model_config_source(config: str, registered: list[str]) -> str:
    """``--model-config`` (``load_sd(config=...)``) that is no registered name, once it can name a model's
    configs: a folder, or a hub id cached here or reachable. Anything else is one line now, naming the option,
    rather than diffusers' own error about the hub after the checkpoint was opened."""
    import difflib

    from lowdim import hub
    from lowdim_sd.loading import ModelLoadError, config_option, hub_id_not_found

    path = expand_user(config)
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ModelLoadError(f"{config_option(config)}: a file; pass the diffusers folder, hub id or registered "
                             f"name of the model the checkpoint was made from")
    if hub.looks_like_path(config):
        raise ModelLoadError(f"{config_option(config)}: no such folder")
    close = difflib.get_close_matches(config.lower(), registered, n=1, cutoff=0.75)
    if close and "/" not in config:
        unknown = either(f"unknown --model-config '{config}'", f"unknown {config_option(config)}")
        raise ModelLoadError(f"{unknown}; did you mean {close[0]}? (registered: "
                             f"{', '.join(sorted(registered))}; or a hub id or a diffusers folder)")
    if not _configs_cached(config) and not hub.hub_reachable():
        raise hub_id_not_found(config, flag="--model-config")
    return config


def _configs_cached(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(isinstance(try_to_load_from_cache(hub_id, name), str)
                   for name in ("model_index.json", "unet/config.json"))
    except ValueError:  # not a valid repository id: nothing of that name is cached
        return False
