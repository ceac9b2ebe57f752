"""What a diffusers folder's ``model_index.json`` promises, checked before diffusers reads the folder, and the
loads that run the checks: a folder, a hub id's copy in the cache, and the words for a single file that fails.

``StableDiffusionPipeline.from_pretrained`` loads an SDXL folder as SD1.x by dropping the parts it does not
know, and transformers builds a tokenizer of two tokens from a missing folder without a word: both then fail
mid-run in a traceback. So the folder must be an SD1.x pipeline, and every part it lists (but those lowdim
never loads) must be there with the files that part is read from, its config fitting its weights and the UNet's
cross-attention the text encoder's width (a UNet of another model fails at its first step in torch's words).
A folder saved with ``variant="fp16"`` holds ``*.fp16.safetensors`` weights only; each such part is loaded as that
variant by its own class, in the dtype asked (diffusers' own variant load fails on a README in a part folder).
Offline, a hub id already in the cache is checked the same way, on its snapshot folder, so it gets the same lines
as a folder; with the hub reachable diffusers loads it as before (an updated repository is fetched).
"""

from __future__ import annotations

import importlib
import json
import math
import re
from pathlib import Path
from typing import Any

from lowdim.errors import first_line
from lowdim.filecheck import printable_name
from lowdim_sd.loading import ModelLoadError
from lowdim_sd.weights_folder import (
    LIBRARIES,
    UNUSED_PARTS,
    WEIGHT_PICKLES,
    check_weights_folder,
    pickle_refusal,
    read_config_json,
)

# What diffusers appends to a shape mismatch: keyword arguments that load random weights, no advice for a reader.
LIBRARY_ADVICE = " If you want to instead"
# Pipelines of SD1.x's parts and shapes (img2img is saved from the same model).
SD1_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
# Words of the errors diffusers passes on when it could not reach the hub for a single file's configs.
NETWORK_WORDS = ("Connect", "connection", "offline", "Name or service", "resolve", "HTTP", "timed out",
                 "outgoing traffic", "HF_HUB_OFFLINE")
# diffusers' names of fp16-variant weights: a file, a shard, a shard index.
FP16_INDEX = re.compile(r"\.safetensors\.index\.fp16\.json$")
FP16_WEIGHTS = re.compile(r"\.fp16(-\d+-of-\d+)?\.safetensors$|" + FP16_INDEX.pattern)
# The name diffusers reads a part's weights under, by the library of the part's class: NAME.safetensors, or a shard
# index NAME.safetensors.index.json, each also as the fp16 variant; a file of any other name is never read.
WEIGHTS_NAMES = {"diffusers": "diffusion_pytorch_model", "transformers": "model"}
# The parts an SD1.x pipeline takes: model_index.json must name each as [library, class] or [null, null].
PIPELINE_PARTS = ("vae", "text_encoder", "tokenizer", "unet", "scheduler", *UNUSED_PARTS)
# diffusers allocates several arrays of num_train_timesteps values as it builds a scheduler; SD trains on 1000.
MAX_TIMESTEPS = 10_000
# The side of the picture a UNet draws by default (sample_size times the VAE's scale): SD1.5 draws 512, SD2 768,
# SDXL 1024. At 4096 a side one UNet step already needs tens of GB of attention, so a bigger default is an edited
# config, not a model; refused before generate tries to allocate it.
MAX_PICTURE = 4096


class MissingPart(ModelLoadError):
    """A part the folder lists is not there (a cached copy may just be incomplete)."""


def check_model_folder(folder: Path, weights: bool = True) -> str | None:
    """``folder`` is an SD1.x pipeline with every part it lists, each with weights its config fits, and parts
    that fit each other; the weights variant to load (``"fp16"`` where a part holds fp16-variant weights only,
    else None). What every load checks before diffusers reads the folder, and ``lowdim show`` before it offers a
    command. ``weights=False``: its JSON files only, no weight header read and no part built (the ui's check as
    a photo is dropped; the load checks the rest)."""
    index = read_config_json(folder / "model_index.json")
    check_entries(index, folder / "model_index.json")
    check_sd1(folder, index, str(folder))
    variant = check_parts(folder, index, weights=True)
    check_picture_size(folder)
    if weights:
        check_weights_folder(folder)  # a config that does not fit its own weights is named before the parts' mismatch
    check_parts_fit(folder, index)
    return variant


def check_config_folder(folder: Path, label: str) -> None:
    """A ``--model-config`` folder: an SD1.x pipeline with every part's configs (its weights are not used)."""
    index = read_config_json(folder / "model_index.json")
    check_entries(index, folder / "model_index.json")
    check_sd1(folder, index, label)
    check_parts(folder, index, weights=False)
    check_picture_size(folder)
    check_parts_fit(folder, index)


def check_parts_fit(folder: Path, index: dict) -> None:
    """The UNet's cross-attention takes tokens as wide as the text encoder gives them: a UNet from another model
    (SD2's 1024 beside SD1.5's 768) loads without a word and fails at its first step in a torch traceback."""
    if not (_listed(index, "unet") and _listed(index, "text_encoder")):
        return
    unet_path, text_path = folder / "unet" / "config.json", folder / "text_encoder" / "config.json"
    unet = read_config_json(unet_path)
    # A UNet with encoder_hid_dim projects the text encoder's tokens to its cross_attention_dim first.
    key = "encoder_hid_dim" if unet.get("encoder_hid_dim") is not None else "cross_attention_dim"
    takes, gives = unet.get(key), read_config_json(text_path).get("hidden_size")
    widths = takes if isinstance(takes, list) else [takes]
    if isinstance(gives, int) and all(isinstance(width, int) for width in widths) \
            and any(width != gives for width in widths):
        raise ModelLoadError(f"{unet_path}: {key} {json.dumps(takes)[:40]}, but {text_path} has hidden_size "
                             f"{gives}: parts of two different models; copy the unet and text_encoder folders from "
                             f"the same model")


def check_entries(index: dict, path: Path) -> None:
    """Each part model_index.json names is [library, class] of diffusers or transformers, or [null, null]:
    diffusers imports whatever module an entry names (``["os", "system"]``) and fails on any other shape in
    Python's words. Parts lowdim passes as None (UNUSED_PARTS) are never imported, so SD1.5's own
    ``["stable_diffusion", "StableDiffusionSafetyChecker"]`` may stay."""
    for name, entry in index.items():
        if name.startswith("_") or not (name in PIPELINE_PARTS or isinstance(entry, list)) or entry == [None, None]:
            continue
        shown = f"{path}: part {printable_name(name)} is {json.dumps(entry)[:80]}"
        if not (isinstance(entry, list) and len(entry) == 2
                and all(isinstance(word, str) and word.isidentifier() for word in entry)
                and (entry[0] in LIBRARIES or name in UNUSED_PARTS)):
            raise ModelLoadError(f"{shown}; lowdim loads diffusers or transformers classes only (or [null, null] "
                                 f"for a part left out)")
        if name not in UNUSED_PARTS and not isinstance(getattr(importlib.import_module(entry[0]), entry[1], None),
                                                       type):
            raise ModelLoadError(f"{shown}, but {entry[0]} has no class '{entry[1]}' (made by a newer {entry[0]}?)")


def check_sd1(folder: Path, index: dict, label: str) -> None:
    """Refuse another kind of pipeline than SD1.x, naming what it is."""
    kind = other_pipeline(folder, index)
    if kind is not None:
        raise ModelLoadError(f"{label}: {kind}; lowdim's SD backend takes SD1.x models (StableDiffusionPipeline)")


def other_pipeline(folder: Path, index: dict) -> str | None:
    """What the folder is when it is no SD1.x pipeline ("an SDXL pipeline (...)", naming what made it one), else
    None. Its class is named only where it says XL: an SDXL UNet in a StableDiffusionPipeline folder is no
    StableDiffusionPipeline, whatever the index says."""
    name = str(index.get("_class_name") or "")
    unet_config = folder / "unet" / "config.json"
    added = read_config_json(unet_config).get("addition_embed_type") if unet_config.is_file() else None
    if "XL" in name:
        return f"an SDXL pipeline ({name})"
    if _listed(index, "text_encoder_2"):
        return "an SDXL pipeline (model_index.json lists a second text encoder, text_encoder_2)"
    if added is not None:
        shown = printable_name(added, 40) if isinstance(added, str) else json.dumps(added)[:40]
        return f"an SDXL pipeline (its UNet takes added conditioning: unet/config.json has addition_embed_type {shown})"
    if name and name not in SD1_PIPELINES:
        return f"a {name}"
    return None


def check_parts(folder: Path, index: dict, weights: bool) -> str | None:
    """Every listed part's folder and files (with ``weights``, its .safetensors weights too); the variant."""
    variant = None
    for name, entry in index.items():
        if name.startswith("_") or name in UNUSED_PARTS or not _listed(index, name):
            continue
        part, kind = folder / name, str(entry[1])
        if not part.is_dir():
            raise MissingPart(f"{part}: missing (model_index.json lists a {kind}); copy the {name} folder from the "
                              f"model it came from")
        if "Tokenizer" in kind:
            _need_files(part, kind, ("tokenizer.json",), ("vocab.json", "merges.txt"))
        elif "Scheduler" in kind:
            _need_files(part, kind, ("scheduler_config.json",))
            check_scheduler_config(part / "scheduler_config.json")
        else:
            _need_files(part, kind, ("config.json",))
            if weights and weights_variant(part, str(entry[0])) is not None:
                variant = "fp16"
    return variant


def check_scheduler_config(path: Path) -> None:
    """The numbers a scheduler is built from, checked first: diffusers makes arrays of ``num_train_timesteps``
    values (10**9 is 4 GB each) and turns a string into a torch error quoting its own signature."""
    config = read_config_json(path)
    steps = config.get("num_train_timesteps", 1000)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_TIMESTEPS:
        raise ModelLoadError(f"{path}: 'num_train_timesteps' is {steps!r}; lowdim accepts an integer from 1 to "
                             f"{MAX_TIMESTEPS} (SD's schedulers use 1000)")
    for key in ("beta_start", "beta_end"):
        if key in config and not _fraction(config[key]):
            raise ModelLoadError(f"{path}: {key!r} is {config[key]!r:.40}; lowdim accepts a number from 0 to 1 "
                                 f"(SD's: 0.00085 and 0.012)")
    betas = config.get("trained_betas")
    if betas is not None and not (isinstance(betas, list) and len(betas) <= MAX_TIMESTEPS
                                  and all(_fraction(beta) for beta in betas)):
        raise ModelLoadError(f"{path}: 'trained_betas' is not a list of numbers from 0 to 1 (or null), at most "
                             f"{MAX_TIMESTEPS} of them")


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and 0 <= value <= 1


def check_picture_size(folder: Path) -> None:
    """The picture the UNet draws by default (``sample_size`` latents times the VAE's scale, as diffusers takes it)
    is one an SD model draws: generate would otherwise try to allocate it (2**20 latents: 17 TB)."""
    config_path = folder / "unet" / "config.json"
    if not config_path.is_file():
        return
    size = read_config_json(config_path).get("sample_size")
    sides = [size, size] if isinstance(size, int) else size
    if not (isinstance(sides, list) and len(sides) == 2
            and all(isinstance(side, int) and not isinstance(side, bool) and side >= 1 for side in sides)):
        raise ModelLoadError(f"{config_path}: 'sample_size' is {json.dumps(size)[:40]}; lowdim accepts a positive "
                             f"integer or [height, width] (SD1.5's: 64)")
    vae_path = folder / "vae" / "config.json"
    channels = read_config_json(vae_path).get("block_out_channels") if vae_path.is_file() else None
    scale = 2 ** (len(channels) - 1) if isinstance(channels, list) and 1 <= len(channels) <= 16 else 8
    if max(sides) * scale > MAX_PICTURE:
        raise ModelLoadError(f"{config_path}: 'sample_size' is {json.dumps(size)}, which with the VAE's scale of "
                             f"{scale} means pictures of {max(sides) * scale} pixels a side by default; lowdim accepts "
                             f"at most {MAX_PICTURE} (SD1.5 draws 512, SDXL 1024)")


def weights_variant(part: Path, library: str | None = None) -> str | None:
    """None where ``part`` holds plain .safetensors weights, "fp16" where only the fp16 variant; else refused.
    With the ``library`` of the part's class, only the names diffusers reads count (WEIGHTS_NAMES): weights under
    another name (``unet/model.safetensors``) are named here, rather than in diffusers' two lines, its logger's and
    its error's."""
    files = sorted(entry.name for entry in part.iterdir() if entry.is_file())
    # A shard index stands for its shards, which check_weights_folder checks (they may be missing or outside).
    safetensors = [name for name in files if name.endswith((".safetensors", ".safetensors.index.json"))
                   or FP16_INDEX.search(name)]
    stem = WEIGHTS_NAMES.get(library or "")
    if stem is not None:
        plain, fp16 = _weights_names(stem)
        if any(name in files for name in plain):
            return None
        if any(name in files for name in fp16):
            return "fp16"
        if safetensors:
            found = ", ".join(printable_name(name, 60) for name in safetensors[:3])
            raise ModelLoadError(f"{part}: no {plain[0]}, the name diffusers reads its weights from (found {found}); "
                                 f"rename the file if it holds this part's weights, else copy the folder from the "
                                 f"model it came from")
    elif any(not FP16_WEIGHTS.search(name) for name in safetensors):
        return None
    elif safetensors:
        return "fp16"
    pickles = [name for name in files if name.lower().endswith(WEIGHT_PICKLES)]
    if pickles:
        raise pickle_refusal(part / pickles[0])
    raise MissingPart(f"{part}: no .safetensors weights in it; copy the folder from the model it came from")


def _weights_names(stem: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The names diffusers reads a part's weights from: (plain file, shard index), then the fp16 variant's."""
    return (f"{stem}.safetensors", f"{stem}.safetensors.index.json"), \
        (f"{stem}.fp16.safetensors", f"{stem}.safetensors.index.fp16.json")


def _need_files(part: Path, kind: str, *choices: tuple[str, ...]) -> None:
    """One of ``choices`` (each a set of file names) is all present in ``part``."""
    if any(all((part / name).is_file() for name in names) for names in choices):
        return
    wanted = " or ".join("+".join(names) for names in choices)
    raise MissingPart(f"{part}: no {wanted} in it, which a {kind} is read from; copy the folder from the model "
                      f"it came from")


def _listed(index: dict, name: str) -> bool:
    entry = index.get(name)
    return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None and entry[1] is not None


def cached_snapshot(hub_id: str) -> Path | None:
    """The folder of ``hub_id``'s copy in the Hugging Face cache (no network), when it holds a pipeline."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(hub_id, local_files_only=True))
    except (OSError, ValueError):  # not cached, or a name the hub's own rules refuse
        return None
    return folder if (folder / "model_index.json").is_file() else None


def load_folder(folder: Path, options: dict[str, Any]) -> Any:
    """The SD1.x pipeline in ``folder``, checked first (parts, pickles, configs), each part in its weights variant."""
    from diffusers import StableDiffusionPipeline

    check_model_folder(folder)
    try:
        parts = load_fp16_parts(folder, options)
        return StableDiffusionPipeline.from_pretrained(str(folder), use_safetensors=True, **options, **parts)
    except Exception as error:  # diffusers raises many types here, all meaning "cannot read this"
        reason = without_library_advice(first_line(error))
        raise ModelLoadError(f"{folder}: could not load it as an SD1.x pipeline: {reason}") from None


def load_fp16_parts(folder: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Each part of ``folder`` holding fp16-variant weights only, loaded by its own class as that variant, for the
    pipeline's load to take as given. Given ``variant="fp16"``, diffusers' pipeline load reads every name in each
    part folder as NAME.VARIANT... and fails with an IndexError on one with no '.' (a README, a ``checkpoints/``
    folder), so the pipeline is loaded with no variant, and these parts handed to it."""
    from lowdim_sd.loading import part_dtype_option

    index = read_config_json(folder / "model_index.json")
    loaded = {}
    for name, library, class_name in _model_parts(index):
        if weights_variant(folder / name, library) == "fp16":
            model_class = getattr(importlib.import_module(library), class_name)
            loaded[name] = model_class.from_pretrained(str(folder), subfolder=name, variant="fp16",
                                                       use_safetensors=True, **part_dtype_option(model_class, options))
    return loaded


def _model_parts(index: dict) -> list[tuple[str, str, str]]:
    """(name, library, class) of each part a load reads weights for: listed, used, no tokenizer or scheduler."""
    return [(name, str(entry[0]), str(entry[1])) for name, entry in index.items()
            if not name.startswith("_") and name not in UNUSED_PARTS and _listed(index, name)
            and not any(word in str(entry[1]) for word in ("Tokenizer", "Scheduler"))]


def without_library_advice(reason: str) -> str:
    """diffusers' reason without the keyword arguments it advises (they load random weights)."""
    return reason.split(LIBRARY_ADVICE)[0]


def load_cached(hub_id: str, options: dict[str, Any]) -> Any | None:
    """Offline, ``hub_id`` from its copy in the Hugging Face cache, checked as a folder is. None when it is not
    cached, or when the hub is reachable: diffusers then loads it, fetching what changed or is missing, as any
    hub id loads; a cached copy of another kind of pipeline (SDXL) is still named first."""
    from lowdim.hub import hub_reachable

    snapshot = cached_snapshot(hub_id)
    if snapshot is None:
        return None
    if hub_reachable():
        index = read_config_json(snapshot / "model_index.json")
        check_sd1(snapshot, index, f"{hub_id} (its copy in the Hugging Face cache)")
        return None
    try:
        pipe = load_folder(snapshot, options)
    except MissingPart as missing:
        if hub_reachable():
            return None
        what = str(missing).split("; copy ")[0]  # the cure is another download, not a copy
        raise ModelLoadError(f"{hub_id}: its copy in the Hugging Face cache is incomplete ({what}); download it "
                             f"again where there is network") from None
    except ModelLoadError as error:
        raise ModelLoadError(f"{hub_id} (its copy in the Hugging Face cache): {error}") from None
    pipe.register_to_config(_name_or_path=hub_id)  # what the pipeline says it is: the hub id, as if fetched
    return pipe


def check_tokenizer(pipe: Any, source: str) -> None:
    """The loaded tokenizer holds words: transformers builds one of just its two special tokens (and no length
    limit) from a missing folder, which then encodes every prompt as unknowns or overflows at drawing."""
    tokenizer = pipe.tokenizer
    if tokenizer is None or len(tokenizer) <= 2 or not tokenizer.model_max_length < MAX_TOKENIZER_LENGTH:
        size = 0 if tokenizer is None else len(tokenizer)
        raise ModelLoadError(f"{source}: the tokenizer it loaded with holds no words ({size} tokens); its tokenizer "
                             f"files are missing: copy the tokenizer folder from the model it came from")


MAX_TOKENIZER_LENGTH = 1 << 20  # a real CLIP tokenizer says 77; an empty one says 1e30


def single_file_error(path: Path, reason: str, config_label: str | None) -> ModelLoadError:
    """diffusers' reason a single file did not load, with what to do: a ``--model-config`` of another shape,
    or, offline with none, the option itself. diffusers' own advice (its keyword arguments) is left out."""
    from huggingface_hub import constants

    from lowdim_sd.loading import config_option
    from lowdim_sd.model_names import moved_configs, unregistered_configs

    if config_label is not None and "expected shape" in reason:
        reason = without_library_advice(reason)
        return ModelLoadError(f"{path}: its weights do not fit {config_label} (another architecture?); pass the "
                              f"folder of the model the checkpoint was made from: {reason}")
    moved = moved_configs(path) if config_label is None else None
    if moved is not None:
        return ModelLoadError(f"{path}: the configs folder its merge recorded, {moved}, is no model folder any more "
                              f"(moved?); pass {config_option()}, a local diffusers folder of the same model")
    unregistered = unregistered_configs(path) if config_label is None else None
    if unregistered is not None:
        return ModelLoadError(f"{path}: its merge read its configs from the registered model {unregistered}, which "
                              f"is not registered here{_plugin_hint(unregistered)}; pass {config_option()}, a local "
                              f"diffusers folder of the same model")
    offline = config_label is None and (constants.HF_HUB_OFFLINE or any(word in reason for word in NETWORK_WORDS))
    hint = f" (offline? pass {config_option()}, a local diffusers folder of the same model)" if offline else ""
    return ModelLoadError(f"{path}: could not load it as an SD1.x checkpoint{hint}: {reason}")


def _plugin_hint(model: str) -> str:
    """': it comes with the plugin lowdim-tinyfaces, which is not installed (...)' for a first-party model."""
    from lowdim_sd.registered_models import missing_plugin_words

    words = missing_plugin_words(model)
    return f": {words}" if words else ""
