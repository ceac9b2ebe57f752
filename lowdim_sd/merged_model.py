"""``lowdim merge``: fold adapters into a model's weights and save the whole model.

For tools with no LoRA support and for deployments that want zero adapter overhead. The output is
either one original-layout checkpoint (what A1111 and ComfyUI load as a model) or a diffusers folder.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

import lowdim
from lowdim import json_text
from lowdim.atomic import describe_removed, replace_folder, sweep_temps, temp_place
from lowdim.errors import LowdimError
from lowdim.files import DTYPES, AdapterFile, atomic_write
from lowdim.option_words import either, option
from lowdim.paths import expand_user
from lowdim_sd.generate import attach_adapters, check_adapter_files
from lowdim_sd.job_fields import PathArg
from lowdim_sd.ldm_checkpoint import BASE_MODEL_KEY, save_single_file
from lowdim_sd.ldm_checkpoint import METADATA as LDM_MARK
from lowdim_sd.loading import SDModel
from lowdim_sd.merge_job import MergeJob, MergeResult, merge_adapters  # noqa: F401 (API: the command's sequence)
from lowdim_sd.model_names import CONFIGS_KEY
from lowdim_sd.model_tree import model_path, refuse_out_in_model
from lowdim_sd.recorded_paths import recorded_folder
from lowdim_sd.text_encoder_files import save_pipeline
from lowdim_sd.textual_inversion import is_embedding

FORMATS = ("single-file", "diffusers")
RECORD = "lowdim_merge.json"  # in a merged diffusers folder: what went into it (diffusers ignores the file)
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
RECORD_KEY = "lowdim_merge"  # the same record in a merged single file's metadata
ScaledAdapters = Sequence[tuple[PathArg, float]]  # (adapter file, scale) pairs, as attach_adapters takes them
# What a merged model holds of a diffusers folder, whatever else is there (a safety checker, two precisions).
MERGED_PARTS = ("unet", "vae", "text_encoder")
EMA_PREFIX = "model_ema."  # an A1111 checkpoint's averaged copy, which a merged model does not hold
SHARD_NUMBER = re.compile(r"-\d+-of-\d+")  # diffusion_pytorch_model[.fp16]-00001-of-00002.safetensors


def save_merged(model: SDModel, adapters: ScaledAdapters, out: str | os.PathLike[str], fmt: str = "single-file",
                overwrite: bool = False, files: Sequence[AdapterFile] | None = None) -> tuple[Path, list[str]]:
    """Load each (adapter, scale), fold them all into ``model`` for good and write it to ``out``.

    Returns the written path and the adapters' identifier tokens, which prompts must still use. A Textual
    Inversion embedding is folded in as its tokens (tokenizer) and rows (text encoder), so it needs the
    diffusers format. ``overwrite`` replaces an earlier merge at ``out`` whole and nothing else: never
    another file or folder, the base model, an adapter being merged or a folder holding one of them.
    ``files``: the adapters as ``check_adapter_files`` read them, used instead of reading them again. A disk
    without room for the merged model (``merged_bytes``) is one line before the model changes; a merged weight
    past the dtype's range (Inf in fp16) is one line before anything is written (``check_merged_range``).
    """
    out = Path(out)
    check_merge_settings(adapters, out, fmt, overwrite, Path(model.source))  # before any file is read
    check_merge_space(out, model.source, model.dtype)  # before the model changes for good
    refuse_attached(model)
    files = check_adapter_files(adapters) if files is None else files  # read here once, for both uses below
    check_merge_embeddings(adapters, fmt, files)
    tokens = attach_adapters(model, adapters, files)
    covered = covered_layers(model)  # read while the adapters are still on the model
    lowdim.Adapters(model.modules).merge_and_unload()
    check_merged_range(model, covered, out)  # before anything is written
    base = model.base_model_id  # a registered name or hub id as it is; a folder as an absolute path
    base = str(Path(base).resolve()) if Path(base).exists() else base
    tokens = [token for token in tokens if token]
    warn_shared_words(tokens, model.taught)
    record = merge_record(base, adapters, tokens, example_prompt(files, tokens), configs_folder(model))
    sweep_earlier_debris(out)  # before the write: the space it frees may be what the new model needs
    try:
        # Without --overwrite, published only where --out is still free: another merge to it may have finished
        # since the check above, and its model is not this one's to replace.
        if fmt == "single-file":
            written = save_single_file(model.pipe, out, base, {RECORD_KEY: json.dumps(record)}, replace=overwrite)
        else:
            written = _save_folder(model, out, record, replace=overwrite)
    except FileExistsError:
        raise LowdimError(f"{out}: already exists (written by another run since this merge checked it); pick a new "
                          f"--out or pass --overwrite") from None
    return written, tokens


def refuse_attached(model: SDModel) -> None:
    """Folding merges every adapter on the model: one a caller left attached would go into the weights too,
    and unnamed in the record."""
    names = lowdim.Adapters(model.modules).names()
    if names:
        raise LowdimError(f"the model already carries adapter(s) {', '.join(names)}, which the merge would fold in "
                          f"unrecorded; remove them first (lowdim.Adapters(model.modules).remove_all()) or save them "
                          f"and pass their files among the adapters")


def covered_layers(model: SDModel) -> dict[str, Path]:
    """Each layer the attached adapters cover, in their files' order, with the first file covering it."""
    view, covered = lowdim.Adapters(model.modules), dict[str, Path]()
    for name, path, _, _ in model.attached:
        if name in view.names():  # an embedding has no adapter name: its rows are not a layer's weights
            for layer in view.info(name).layers:
                covered.setdefault(layer.name, Path(path))
    return covered


def check_merged_range(model: SDModel, covered: dict[str, Path], out: Path) -> None:
    """One line for the first merged layer holding Inf or NaN: its dtype (fp16, whose range ends at 65504)
    overflowed, and the model written would draw black images in every tool (lowdim refuses such files on
    load). One ``isfinite`` a layer, far cheaper than the save it spares."""
    for layer, adapter in covered.items():
        weight = getattr(model.modules.get_submodule(layer), "weight", None)
        if weight is None or bool(torch.isfinite(weight).all()):
            continue
        word = next((word for word, dtype in DTYPES.items() if dtype == weight.dtype), str(weight.dtype))
        fix = (either("merge with --dtype fp32", "load the model in fp32 to merge: load_sd(..., dtype='fp32')")
               if weight.dtype == torch.float16 else "lower the adapter's scale")
        raise LowdimError(f"{out}: not written: layer {layer} ({adapter}): its merged weights go beyond {word}'s "
                          f"range (Inf/NaN); {fix}")


def merge_record(base: str, adapters: ScaledAdapters, tokens: list[str], prompt: str = "",
                 configs: str | None = None) -> dict:
    """What a merged model was made of, so ``lowdim show`` can name its base, adapters and the words that
    call its subjects, which the weights alone no longer say; ``prompt``: the one merge suggested; ``configs``: the
    folder a single-file base read its configs from, where loading the merged file finds them (``config_source``)."""
    names = distinct_names([Path(path) for path, _ in adapters])
    record = {"base_model": base, "adapters": [{"file": name, "scale": scale}
                                               for name, (_, scale) in zip(names, adapters, strict=True)],
              "tokens": list(dict.fromkeys(tokens))}
    return {**record, **({"prompt": prompt} if prompt else {}), **({CONFIGS_KEY: configs} if configs else {})}


def configs_folder(model: SDModel) -> str | None:
    """The folder that a model loaded from a single file read its configs from (``--model-config``, or those a
    lowdim file records), as its record names it: a registered model's by that model's name, any other absolute
    (``recorded_folder``); the folder its tokenizer came from, as no single file holds a tokenizer. None for a
    model from a folder or the hub, whose configs are its own: its record's base model finds them."""
    if not expand_user(model.source).is_file():
        return None
    folder = getattr(model.pipe.tokenizer, "name_or_path", None)
    path = expand_user(folder) if isinstance(folder, str) and folder else None
    return recorded_folder(path) if path is not None and (path / "model_index.json").is_file() else None


def distinct_names(paths: list[Path]) -> list[str]:
    """Each path by its file name, or by as many of its last parts as tell it from the others (``me/adapter``,
    ``you/adapter``): a record of full paths would carry this machine's folders to wherever the model goes."""
    depths = [1] * len(paths)
    while True:
        names = ["/".join(path.parts[-depth:]) for path, depth in zip(paths, depths, strict=True)]
        clashing = [i for i, name in enumerate(names)
                    if names.count(name) > 1 and depths[i] < len(paths[i].parts)]
        if not clashing:
            return names
        for index in clashing:
            depths[index] += 1


def warn_shared_words(tokens: list[str], taught: list[str] | None) -> None:
    """Subjects that answer to one word blend, which a merge then keeps for good: said before it is written."""
    for word in sorted({token for token in tokens if tokens.count(token) > 1}):
        warnings.warn(f"{tokens.count(word)} adapters learned the word '{word}': merged, their subjects blend into "
                      f"one for good; personalize each with its own --token to keep them apart", stacklevel=3)
    for word in sorted(set(tokens) & set(taught or [])):
        warnings.warn(f"an adapter and the merged model it goes into both learned the word '{word}': their subjects "
                      f"blend into one for good; personalize the adapter with its own --token", stacklevel=3)


def example_prompt(files: Sequence[AdapterFile], tokens: list[str]) -> str:
    """The prompt merge suggests, and ``lowdim show`` after it: the first adapter's learned phrase with its looks,
    the first token in place of [V] ("" when no adapter has a token)."""
    from lowdim_sd.adapter_info import learned_phrase
    from lowdim_sd.prompt_words import fill

    if not tokens:
        return ""
    phrase = "a [V] face" if is_embedding(files[0]) else learned_phrase(files[0].metadata)
    return fill(phrase, tokens[0])


def check_merge_settings(adapters: ScaledAdapters, out: Path, fmt: str, overwrite: bool,
                         source: Path, owner: str = "save_merged") -> None:
    """Everything about a merge that needs neither the model nor an adapter file (format, adapters given, --out),
    one line for the first wrong; ``source`` is where the base model is loaded from, which the output must never
    replace. ``owner``: what a Python caller set ``fmt`` and ``adapters`` on (``MergeJob``, ``save_merged``)."""
    if fmt not in FORMATS:
        raise LowdimError(f"unknown {option('fmt', owner, '--format')} '{fmt}'; known: {', '.join(FORMATS)}")
    if not adapters:
        given = either("--adapter FILE[:SCALE]", f"adapter in {owner}(adapters=...)")
        raise LowdimError(f"no adapter given: pass at least one {given}")
    _check_target(out, fmt, overwrite, source, [path for path, _ in adapters])


def check_merge_space(out: Path, model: str | os.PathLike[str], dtype: str | torch.dtype,
                      flag: str | None = None) -> None:
    """One line when the disk holding ``out`` lacks the room the merged model needs (``merged_bytes``, at least
    runs.MIN_FREE_BYTES): a disk found full at the end would cost the whole merge. ``flag`` as check_space has it."""
    from lowdim_sd.runs import MIN_FREE_BYTES, check_space

    check_space(out, max(merged_bytes(model, dtype), MIN_FREE_BYTES), "the merge", flag)


def merged_bytes(model: str | os.PathLike[str], dtype: str | torch.dtype = "auto") -> int:
    """About the bytes a merge of ``model`` (a registered name, a folder or a single file) writes in ``dtype``
    (``--dtype``'s word, auto being fp32 as the merge runs on the CPU, or a torch dtype), known before the model
    loads: its weights counted from the headers of its files here, each part's shards all and one of its precision
    variants; 0 where it has no files here (a hub id not downloaded yet)."""
    source = model_path(model)
    if source is None:
        return 0
    if source.is_file():
        values = _stored_values([source])
    else:  # the variants of a part hold as many values each
        values = sum(max(map(_stored_values, _variants(source / part)), default=0) for part in MERGED_PARTS)
    if isinstance(dtype, torch.dtype):
        return values * dtype.itemsize
    return values * (2 if dtype in ("fp16", "bf16") else 4)


def _variants(part: Path) -> list[list[Path]]:
    """A diffusers part's weight files, one list a precision variant (plain, fp16...), each with all its shards."""
    variants: dict[str, list[Path]] = {}
    for file in sorted(part.glob("*.safetensors")):
        if file.is_file():
            variants.setdefault(SHARD_NUMBER.sub("", file.name), []).append(file)
    return list(variants.values())


def _stored_values(files: list[Path]) -> int:
    """The values the files hold that a merged model keeps (not a checkpoint's EMA copy); 0 for files that cannot
    be read, which the load then names in its own words."""
    from lowdim_sd.loading import ModelLoadError
    from lowdim_sd.weights_folder import stored_sizes

    try:
        sizes = stored_sizes(files)
    except ModelLoadError:
        return 0
    return sum(count for key, count in sizes.items() if not key.startswith(EMA_PREFIX))


def check_merge_embeddings(adapters: ScaledAdapters, fmt: str,
                           files: Sequence[AdapterFile] | None = None) -> None:
    """An embedding among the adapters needs --format diffusers. ``files``: the adapters as
    ``check_adapter_files`` read them; without them, they are read here."""
    files = check_adapter_files(adapters) if files is None else files
    embeddings = [path for (path, _), read in zip(adapters, files, strict=True) if is_embedding(read)]
    if embeddings and fmt == "single-file":
        # The new tokens live in the tokenizer, which an A1111/ComfyUI checkpoint does not hold.
        raise LowdimError(f"{embeddings[0]}: a Textual Inversion embedding adds tokens to the tokenizer, which a "
                          f"single-file checkpoint cannot hold; merge with --format diffusers, or keep the "
                          f"embedding beside the model (lowdim export --format a1111)")


def _check_target(out: Path, fmt: str, overwrite: bool, source: Path, adapters: list[PathArg]) -> None:
    """Before the model is changed or written: a bad --out should cost nothing, and --overwrite replaces an
    earlier merge and nothing else."""
    _refuse_a_source(out, source, adapters)
    if fmt == "diffusers":
        _check_folder_target(out, overwrite)
    else:
        _check_file_target(out, overwrite)


def _refuse_a_source(out: Path, source: Path, adapters: list[PathArg]) -> None:
    """--out is never the base model, inside it, or a folder holding it (replacing it whole would delete it), nor an
    adapter being merged or a folder holding one, flag or not."""
    refuse_out_in_model(out, source, "merge")
    if not out.exists():
        return
    target = out.resolve()
    for adapter in (Path(path) for path in adapters if Path(path).exists()):
        if target == adapter.resolve():
            raise LowdimError(f"{out}: refusing to overwrite the source adapter with its merge; pick a new --out")
        if target in adapter.resolve().parents:
            raise LowdimError(f"{out}: holds the adapter {adapter} being merged, which replacing the folder "
                              f"would delete; pick a new --out")


def _check_folder_target(out: Path, overwrite: bool) -> None:
    if out.suffix.lower() in SINGLE_FILE_SUFFIXES:  # A1111 and ComfyUI would list a folder named so as a model
        raise LowdimError(f"{out}: a diffusers pipeline is a folder, and this name is a single file's; drop "
                          f"{out.suffix} from --out, or pass --format single-file for one file")
    here = Path.cwd().resolve()
    if out.exists() and out.resolve() in (here, *here.parents):
        raise LowdimError(f"{out}: is the current folder or one above it, which merge cannot replace (it swaps "
                          f"--out whole); pick a new --out")
    if out.exists() and not out.is_dir():
        raise LowdimError(f"{out}: already exists and is not a folder; pick a new --out")
    if out.is_dir() and any(out.iterdir()) and not is_merged_folder(out):
        raise LowdimError(f"{out}: already exists, is not empty and is not an earlier merge (no {RECORD} in it), "
                          f"which is all --overwrite replaces; pick a new --out, or move its files away yourself")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LowdimError(f"{out}: already exists (an earlier merge); pick a new --out or pass --overwrite")
    foreign = _not_of_the_merge(out) if out.is_dir() else []
    if foreign:  # --overwrite swaps the folder whole: these would go with it, unsaid
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise LowdimError(f"{out}: holds {shown}, which the earlier merge did not write and --overwrite would delete "
                          f"with it; move them away, or pick a new --out")


def _not_of_the_merge(folder: Path) -> list[str]:
    """What an earlier merge's folder holds besides what merge wrote: the record, the pipeline index and the
    components that index names (a single file merged into it later, a user's notes)."""
    try:
        index = json_text.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return []  # not an earlier merge: refused above in its own words
    own = {RECORD, "model_index.json", *(key for key in index if not key.startswith("_"))}
    return sorted(entry.name for entry in folder.iterdir() if entry.name not in own)


def _check_file_target(out: Path, overwrite: bool) -> None:
    if out.is_dir() or out.suffix.lower() != ".safetensors":
        raise LowdimError(f"{out}: a single-file checkpoint needs a file name ending in .safetensors "
                          f"(or --format diffusers for a pipeline folder)")
    if out.exists() and not is_merged_file(out):
        raise LowdimError(f"{out}: already exists and is not an earlier merge (its metadata holds no lowdim merge "
                          f"record), which is all --overwrite replaces; pick a new --out")
    if out.exists() and not overwrite:
        raise LowdimError(f"{out}: already exists (an earlier merge); pick a new --out or pass --overwrite")


def is_merged_folder(folder: Path) -> bool:
    """A diffusers folder ``lowdim merge`` wrote: its pipeline index and the merge record beside it."""
    return (folder / RECORD).is_file() and (folder / "model_index.json").is_file()


def is_merged_file(path: Path) -> bool:
    """A single file ``lowdim merge`` wrote, read from the header alone; False for any other file, a damaged one
    included."""
    return path.is_file() and read_merge_record(path) is not None


def read_merge_record(path: Path) -> dict | None:
    """What a model ``lowdim merge`` wrote records of itself (a folder: its record file; a single file: its
    header), None for any other model; a file from before the record gives its base model alone."""
    from safetensors import safe_open

    if path.is_dir():
        return _json_object((path / RECORD).read_text(errors="replace")) if (path / RECORD).is_file() else None
    if not (path.is_file() and path.suffix.lower() == ".safetensors"):
        return None
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
    except Exception:  # safetensors raises its own error types for every way a file is broken
        return None
    return record_in_metadata(metadata)


def record_in_metadata(metadata: dict[str, str]) -> dict | None:
    """A single file's merge record from its header metadata (lowdim's mark and a record or a base model)."""
    if metadata.get("lowdim") != LDM_MARK["lowdim"] or not (metadata.get(RECORD_KEY) or metadata.get(BASE_MODEL_KEY)):
        return None
    return _json_object(metadata.get(RECORD_KEY) or "") or {"base_model": metadata.get(BASE_MODEL_KEY)}


def _json_object(text: str) -> dict:
    try:
        value = json_text.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _save_folder(model: SDModel, out: Path, record: dict, replace: bool = True) -> Path:
    """Write inside a hidden place beside ``out`` and rename at the end, so an interrupted save leaves no half
    folder (and a killed one leaves the place, which the next merge to ``out`` sweeps). ``replace=False``: only
    onto no folder or an empty one (FileExistsError otherwise)."""
    given, out = out, Path(os.path.abspath(out))  # "x/..": named by where it is, as the staging names need
    out.parent.mkdir(parents=True, exist_ok=True)
    # The place is made, locked and removed again by temp_place, inside its own handler: a Ctrl-C at any point
    # after the place exists removes it.
    with temp_place(out) as staging:
        staging.mkdir()  # with the umask's permissions, which the renamed folder keeps
        save_pipeline(model.pipe, staging)
        atomic_write(staging / RECORD, lambda name: Path(name).write_text(json.dumps(record, indent=1)))
        replace_folder(staging, out, replace)
    return given


def sweep_earlier_debris(out: Path) -> None:
    """Remove what a merge to ``out`` killed outright (kill -9, the OOM killer) left hidden beside it: a model's
    worth of temp files, which nothing else would ever remove; says what it removed."""
    out = Path(os.path.abspath(out))
    removed = sweep_temps(out.parent, out.name)
    if removed:
        warnings.warn(f"{out.parent}: {describe_removed(removed)}", stacklevel=3)
