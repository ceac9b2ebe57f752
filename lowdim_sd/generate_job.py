"""``lowdim generate`` as one call: ``generate_to_folder(GenerateJob(...))`` runs the command's checks in its order
(each adapter file read once, everything that needs no model before minutes of loading it), then loads the model,
attaches the adapters and draws into a folder.

The library pieces it calls (``check_config``, ``attach_adapters``, ``draw_to_folder``, ...) stay importable for a
caller that holds a model already; this is the entry point for "draw with these adapter files into a folder".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.option_words import option
from lowdim_sd.job_fields import PathField, job_dataclass, path_field

if TYPE_CHECKING:
    from lowdim_sd.attached_files import AdapterArg
    from lowdim_sd.generate import GenerateConfig

__all__ = ["GenerateJob", "GenerateResult", "generate_to_folder"]


@job_dataclass
class GenerateJob:
    """Everything ``lowdim generate`` needs; one field per CLI option, the drawing settings in ``config``.

    adapters: the adapter files, each ``'me.safetensors'``, ``'me.safetensors:0.8'`` (as ``-a`` takes it), a Path,
        or a ``(path, scale)`` pair. out: the folder for the PNGs, grid.png and prompts.json. progress: the bar of
        pictures drawn (on a terminal only).
    """

    model: str
    config: GenerateConfig
    adapters: Sequence[AdapterArg] = ()
    out: PathField = path_field(default=Path("images"))
    device: str = "auto"
    dtype: str = "auto"
    model_config: str | None = None  # a single-file model offline: a diffusers folder of its architecture
    progress: bool = True


@dataclass
class GenerateResult:
    """What ``generate_to_folder`` wrote: one PNG per (prompt, seed), in drawing order, and grid.png."""

    images: list[Path]
    grid: Path


def scaled_adapters(adapters: object, owner: str) -> list[tuple[Path, float]]:
    """``adapters`` as (path, scale) pairs: a str as ``-a`` reads it (``FILE[:SCALE]``), a Path or a (path, scale)
    pair as ``attach_adapters`` does. One given alone is a list of one. ``owner``: the job whose field it is."""
    from lowdim_sd.attached_files import adapter_entries
    from lowdim_sd.attaching import parse_adapter_arg

    if isinstance(adapters, (str, os.PathLike)):
        adapters = [adapters]
    if not isinstance(adapters, (list, tuple)):
        raise LowdimError(f"{option('adapters', owner, '--adapter')} takes a list of adapter files (FILE[:SCALE], "
                          f"a path or a (path, scale) pair); got {adapters!r:.80}")
    return [parse_adapter_arg(item) if isinstance(item, str) else adapter_entries([item])[0] for item in adapters]


def check_images_folder(out_dir: Path) -> None:
    """``out`` is a folder: a file there, or a picture's name, is one line before the model loads."""
    from lowdim_sd.images import IMAGE_EXTENSIONS

    flag = option("out", "GenerateJob")
    if out_dir.exists() and not out_dir.is_dir():
        raise LowdimError(f"{out_dir}: a file, where {flag} needs a folder for the images")
    if not out_dir.exists() and out_dir.suffix.lower() in IMAGE_EXTENSIONS:
        raise LowdimError(f"{flag} {out_dir}: a picture's name, where {flag} is a folder for the images (one PNG per "
                          f"prompt and seed, and grid.png); pass a folder, e.g. {flag} {out_dir.with_suffix('')}")


def taught_before_loading(model: object) -> list[str]:
    """The words the merged model ``model`` names was taught, read from the record `lowdim merge` left in it (its
    folder's record file, a single file's header), not by loading it: [] for any other model, or for one
    ``load_sd`` is about to refuse (it says why, in its own line)."""
    from lowdim_sd.model_names import name_and_source
    from lowdim_sd.taught_tokens import merged_tokens

    if not isinstance(model, (str, os.PathLike)):
        return []
    try:
        _, source = name_and_source(os.fspath(model), refuse_typos=False)  # a registered name: the folder it loads
    except LowdimError:
        return []
    return merged_tokens(source) or []


def generate_to_folder(job: GenerateJob) -> GenerateResult:
    """Check, load, attach and draw as ``lowdim generate`` does, writing into ``job.out``. Every check that needs
    no model (the adapter list, each file read once, the settings, the output folder) comes before the model
    loads; a stop keeps the pictures drawn (``draw_to_folder``)."""
    from lowdim_sd import loading
    from lowdim_sd.adapter_list import check_adapter_list
    from lowdim_sd.draw_parts import check_parts_have_adapters, warn_unmatched_parts
    from lowdim_sd.generate import (
        GenerateConfig,
        attach_adapters,
        check_adapter_files,
        check_config,
        draw_to_folder,
        warn_about_tokens,
        warn_slow_precision,
    )
    from lowdim_sd.runs import output_folder

    config = job.config
    if not isinstance(config, GenerateConfig):
        raise LowdimError(f"{option('config', 'GenerateJob')} takes a GenerateConfig (the prompts, seeds and drawing "
                          f"settings), got {config!r:.80}")
    adapters = scaled_adapters(job.adapters, "GenerateJob")
    check_adapter_list(adapters)
    files = check_adapter_files(adapters)  # each file read here, once: the model is given what was read
    # before minutes of model loading and drawing, not after; the token may repeat a file's own token as it is, or
    # a merged model's own (read from its record, not its weights)
    check_config(config, [file.metadata.get("token", "") for file in files], taught_before_loading(job.model))
    check_parts_have_adapters(config.parts, len(adapters))
    warn_unmatched_parts(config.parts, adapters, files)  # a part acting on no layer of them draws nothing else
    check_images_folder(job.out)
    with output_folder(job.out):  # usable before the model loads, and one run at a time
        sd = loading.load_sd(job.model, job.device, job.dtype, job.model_config)  # looked up now: tests patch it
        warn_slow_precision(sd)
        tokens = attach_adapters(sd, adapters, files)
        warn_about_tokens(config, tokens, sd.taught)
        # a stop keeps what is drawn; prompts.json records the adapters and settings it was drawn with
        paths, grid = draw_to_folder(sd, config, job.out, tokens, progress=job.progress, adapters=adapters)
    return GenerateResult(paths, grid)
