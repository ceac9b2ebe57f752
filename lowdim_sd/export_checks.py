"""What ``lowdim export`` checks before it reads an adapter's tensors, each in one line: the format and dtype asked
for (pure arguments, so first), the source (a folder given as the adapter), the output's name, what is at the output
already (only an earlier export is replaced) and, for an output that is a symbolic link, the file it leads to, which
is the one written."""

from __future__ import annotations

import os
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.files import DTYPES
from lowdim.foreign_files import describe_foreign
from lowdim.option_words import either

# What each format is for, as the line refusing an unknown one lists them.
FORMAT_USES = {"diffusers": "a LoRA or an embedding, for diffusers", "kohya": "a LoRA, for ComfyUI and A1111",
               "a1111": "an embedding, for A1111 and ComfyUI"}
# Words typed for a format that name a reader or a library instead.
FORMAT_MEANT = {"peft": "diffusers", "comfyui": "kohya", "comfy": "kohya"}


class ExportError(LowdimError):
    """An adapter that cannot be written as an SD LoRA (format, dtype, layer names or factor shapes)."""


def check_export_options(fmt: str, dtype: str, owner: str = "export_adapter") -> None:
    """One line for a format or a dtype export does not write, with the word meant for a near miss (``Kohya``,
    ``kohay``, ``float16``): pure argument checks, made before any file is looked at, so a typo is not reported
    after an output check it makes moot. ``owner``: what a Python caller called with them (``export_adapter``, or
    the ``ExportJob`` that ``checked_export`` was given), named in the line; the CLI's line names its flags."""
    from lowdim_sd.devices import DTYPE_MEANT, did_you_mean
    from lowdim_sd.run_outputs import export_formats

    formats = list(export_formats())
    if fmt not in formats:
        listed = ", ".join(f"{name} ({FORMAT_USES[name]})" if name in FORMAT_USES else name for name in formats)
        named = either(f"unknown --format '{fmt}'", f"unknown export format '{fmt}' ({owner}(fmt=...))")
        raise ExportError(f"{named}; choose one of {listed}" + did_you_mean(str(fmt), FORMAT_MEANT, formats))
    if dtype not in DTYPES:
        named = either("the export's dtype (--save-dtype)", f"{owner}(dtype=...)")
        raise ExportError(f"{named} must be one of {', '.join(DTYPES)}, got '{dtype}'"
                          + did_you_mean(str(dtype), DTYPE_MEANT, list(DTYPES)))


def check_export_source(source: Path) -> Path:
    """A folder given as the adapter (``lowdim export .`` inside a run's folder) is one line before any name of its
    export is made from it: the whole model it is (``train --full``'s, ``merge``'s), else the adapter it holds to
    pass, or that it holds none. A file is left to the adapter's reading."""
    if source.is_dir():
        from lowdim.files import FORMAT
        from lowdim.given_folder import folder_line
        from lowdim_sd.attaching import whole_model_line

        raise ExportError(whole_model_line(source) or folder_line(source, FORMAT, "adapter"))
    return source


def check_export_target(out: str | os.PathLike) -> Path:
    """``out`` as the Path to write, or one line naming it as given.

    Every format writes one .safetensors file, the only kind A1111 and ComfyUI list as a LoRA or an
    embedding: a symbolic link's name and the name of the file it leads to (the one written) alike. A name ending
    in a slash means a folder even before it exists, so the raw text is checked: ``Path`` drops that slash, and a
    file named after the folder would be written instead.
    """
    raw = os.fspath(out)
    target = Path(raw)
    if target.is_dir():
        raise ExportError(f"{raw}: is a folder; give a file name to write")
    if raw.endswith(("/", os.sep)):
        raise ExportError(f"{raw}: ends in a slash, so it names a folder; give a file name to write, ending in "
                          f".safetensors")
    if target.suffix.lower() != ".safetensors":
        # lora.txt -> lora.safetensors, lora.safetensors.bak -> lora.safetensors
        stem = target.stem if target.stem.lower().endswith(".safetensors") else target.stem + ".safetensors"
        raise ExportError(f"{raw}: not a .safetensors name; an export is a .safetensors file, the only kind A1111 "
                          f"and ComfyUI list, e.g. {target.with_name(stem)}")
    if target.is_symlink():
        _check_linked_file(target, written_through(target))
    return target


def _check_linked_file(link: Path, file: Path) -> None:
    """The name rule for the file a link at the output leads to, which is the one written (``written_through``), and
    its folder, which must be there: a link into a missing folder is a store moved or not mounted, and making the
    folder (as a plain -o's is made) would write the export where no one looks for it."""
    instead = either("choose another -o", "choose another out_path")
    if file.suffix.lower() != ".safetensors":
        raise ExportError(f"{link}: a symbolic link to {file}, not a .safetensors name; an export is written to the "
                          f"file its link leads to, so link to a .safetensors file or {instead}")
    if not file.parent.is_dir():
        raise ExportError(f"{link}: a symbolic link to {file}, in {file.parent}, which is no folder here (a store "
                          f"moved, or not mounted?); make the folder, or {instead}")


def written_through(target: Path) -> Path:
    """The file a write to ``target`` makes or replaces: ``target`` itself, or the file the symbolic link at
    ``target`` leads to (a ComfyUI LoRA folder of links into a shared store). That file is written, atomically in
    its own folder, and the link stays, leading to the new export; renaming over the link would put a file in its
    place and leave the store's copy stale. A link that leads round in a loop is one line."""
    if not target.is_symlink():
        return target
    resolved = Path(os.path.realpath(target))
    if resolved.is_symlink():  # realpath stops where the links go round
        raise ExportError(f"{target}: a symbolic link that leads round in a loop, to no file; "
                          f"{either('choose another -o', 'choose another out_path')}")
    return resolved


def check_replaceable(target: Path, source: Path) -> None:
    """One line where ``target`` is the adapter ``source`` or holds a file ``lowdim export`` did not write
    (another adapter, a merged model): --overwrite replaces an earlier export only, as merge's replaces an
    earlier merge only. Whether export wrote it is read from its header as ``lowdim show`` reads it; what it is
    otherwise, in show's words. A link at ``target`` is judged by the file it leads to, the one a write replaces."""
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise ExportError(f"{target}: refusing to overwrite the source adapter with its export")
    if not target.is_file():  # nothing there (a folder is check_export_target's)
        return
    from lowdim_sd.file_info import describe, exported_by_lowdim
    from lowdim_sd.file_info_parts import read_header

    try:
        if exported_by_lowdim(read_header(target)):
            return
        what = describe(target).kind
    except (LowdimError, OSError):  # not a safetensors file show reads: what its bytes say it is
        what = _foreign_kind(target)
    raise ExportError(f"{target}: already exists and is not an earlier export ({what}), which is all "
                      f"{either('--overwrite', 'overwrite=True')} replaces; "
                      f"{either('choose another -o', 'choose another out_path')}")


def _foreign_kind(target: Path) -> str:
    """What a file show cannot read is, by its first bytes (a text file, a pickle), for export's refusal."""
    try:
        return describe_foreign(target) or "not a readable .safetensors file"
    except OSError as error:
        return f"unreadable: {error.strerror or error}"


def exists_error(target: Path) -> ExportError:
    """The line for an output already there, without --overwrite (one another run wrote meanwhile included)."""
    return ExportError(f"{target}: already exists; pass {either('--overwrite', 'overwrite=True')} to replace it, "
                       f"or {either('choose another -o', 'choose another out_path')}")
