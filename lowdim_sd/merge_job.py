"""``lowdim merge`` as one call: ``merge_adapters(MergeJob(...))`` runs the command's checks in its order (the
settings and the output first, then each adapter file read once), then loads the model on the CPU and saves it
with the adapters folded in (``merged_model.save_merged``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.option_words import option
from lowdim_sd.job_fields import PathField, job_dataclass, path_field

if TYPE_CHECKING:
    from lowdim_sd.attached_files import AdapterArg

__all__ = ["MergeJob", "MergeResult", "merge_adapters"]


@job_dataclass
class MergeJob:
    """Everything ``lowdim merge`` needs; one field per CLI option.

    adapters: the adapter files, each ``'me.safetensors'``, ``'me.safetensors:0.8'`` (as ``-a`` takes it), a Path,
        or a ``(path, scale)`` pair. out: a .safetensors file (``fmt='single-file'``) or a new folder
        (``fmt='diffusers'``). overwrite: replace an earlier merge at ``out``, whole, and nothing else. dtype: the
        merged weights' type (auto: fp32, as the merge runs on the CPU).
    """

    model: str
    adapters: Sequence[AdapterArg]
    out: PathField = path_field()
    fmt: str = "single-file"
    overwrite: bool = False
    dtype: str = "auto"
    model_config: str | None = None  # a single-file model offline: a diffusers folder of its architecture


@dataclass
class MergeResult:
    """What ``merge_adapters`` wrote: ``path``, the merged model; ``tokens``, the adapters' identifiers, which
    prompts must still use; ``example``, a prompt naming the first of them ('' when none records one)."""

    path: Path
    tokens: list[str]
    example: str = ""


def merge_adapters(job: MergeJob) -> MergeResult:
    """Check, load and merge as ``lowdim merge`` does. Everything that needs no model (the format, the adapters
    given, the output and the room for it, each file read once) comes before seconds of model loading."""
    from lowdim_sd import loading
    from lowdim_sd.adapter_list import check_adapter_list
    from lowdim_sd.generate import check_adapter_files
    from lowdim_sd.generate_job import scaled_adapters
    from lowdim_sd.merged_model import (
        check_merge_embeddings,
        check_merge_settings,
        check_merge_space,
        example_prompt,
        save_merged,
    )
    from lowdim_sd.runs import check_file_target

    adapters = scaled_adapters(job.adapters, "MergeJob")
    check_adapter_list(adapters, command="merge")
    out, flag = job.out, option("out", "MergeJob", "-o")
    check_merge_settings(adapters, out, job.fmt, job.overwrite, Path(job.model), owner="MergeJob")
    check_file_target(out, flag)  # its folder (a diffusers folder is made later)
    check_merge_space(out, job.model, job.dtype, flag)
    files = check_adapter_files(adapters)  # each file read here, once: the merge is given what was read
    check_merge_embeddings(adapters, job.fmt, files)
    # merging is a few matrix products: no accelerator needed; looked up now, as tests patch it
    sd = loading.load_sd(job.model, "cpu", job.dtype, job.model_config)
    written, tokens = save_merged(sd, adapters, out, job.fmt, job.overwrite, files)
    return MergeResult(written, tokens, example_prompt(files, tokens) if tokens else "")
