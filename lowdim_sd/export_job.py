"""``lowdim export`` as one call: ``checked_export(ExportJob(...))`` runs the command's checks in its order (the
format and dtype, the adapter given, the output's name, what it may replace, its folder), then writes the export
(``export.export_adapter``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lowdim.option_words import either, option
from lowdim_sd.job_fields import PathField, job_dataclass, path_field

__all__ = ["ExportJob", "ExportResult", "checked_export"]


@job_dataclass
class ExportJob:
    """Everything ``lowdim export`` needs; one field per CLI option.

    adapter: a lowdim adapter file. out: the file to write, ending in .safetensors (None: NAME.FORMAT.safetensors
    beside ``adapter``). fmt: diffusers (peft keys) or kohya; an embedding: diffusers or a1111. dtype: the
    tensors' type in the file (fp16, bf16, fp32). overwrite: replace an earlier export at ``out`` (nothing else).
    """

    adapter: PathField = path_field()
    # Kept as given, not made a Path: a Path drops a trailing slash, and 'newd/' must be refused as a folder, not
    # written as a file named newd.
    out: str | os.PathLike[str] | None = None
    fmt: str = "diffusers"
    dtype: str = "fp16"
    overwrite: bool = False


@dataclass
class ExportResult:
    """What ``checked_export`` wrote: ``path``, the file written; ``link``, the symbolic link given as ``out``
    that leads to it (None: ``out`` was the file itself)."""

    path: Path
    link: Path | None = None


def checked_export(job: ExportJob) -> ExportResult:
    """Check and export as ``lowdim export`` does: every check before the adapter is read, so a typo or a taken
    output costs nothing and is told first."""
    from lowdim_sd.export import export_adapter
    from lowdim_sd.export_checks import (
        check_export_options,
        check_export_source,
        check_export_target,
        check_replaceable,
        written_through,
    )
    from lowdim_sd.run_outputs import export_path
    from lowdim_sd.runs import check_file_target, refuse_overwrite

    check_export_options(job.fmt, job.dtype, "ExportJob")  # pure arguments: a typo first, not after "pass --overwrite"
    source = check_export_source(job.adapter)  # a folder (`lowdim export .`) before a name is made from it
    given = job.out if job.out is not None else export_path(source, job.fmt)
    target = check_export_target(given)  # before any other check
    check_replaceable(target, job.adapter)  # not "pass --overwrite" for a file overwrite would not replace
    refuse_overwrite([target], job.overwrite, other=either("choose another -o", "choose another out"))
    # a link's: the file it leads to is the one written
    check_file_target(written_through(target), option("out", "ExportJob", "-o"))
    # as given: its warnings name the path typed; without overwrite it never replaces a file another run wrote since
    written = export_adapter(job.adapter, given, job.fmt, dtype=job.dtype, overwrite=job.overwrite)
    return ExportResult(written, target if target.is_symlink() else None)
