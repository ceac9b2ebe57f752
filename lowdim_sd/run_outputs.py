"""What an earlier run left in an output folder that a new run would leave beside its own output, stale: the
adapter, its ``lowdim export`` files, or a ``train --full`` run's ``model/``.

A script reading ``OUT/adapter.safetensors`` (or ``lowdim show OUT``) must never pick up another run's file, so a
run refuses such a folder in one line, and ``--overwrite`` removes those files. Only what lowdim wrote counts,
each told by its header or record, never by its name alone: a user's own file at one of these names stays.

The adapters a ``train --subjects`` run wrote (``OUT/NAME.safetensors``) are named after the user's subjects, so
lowdim cannot tell them from adapters a user keeps there on purpose: a --full run leaves them as they are, naming
them (told by header) in one warning as it starts (``warn_adapters_left``).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.option_words import either

ADAPTER = "adapter.safetensors"  # what an adapter run (train, personalize) writes into its --out
MODEL = "model"  # what a train --full run writes into its --out


@dataclass(frozen=True)
class Earlier:
    """One output of an earlier run: its path, and what it is, as a line names it."""

    path: Path
    what: str


def export_path(adapter: Path, fmt: str) -> Path:
    """Where ``lowdim export`` (and ``personalize --export``) put ``adapter``'s export in ``fmt`` by default:
    NAME.FORMAT.safetensors beside it."""
    return adapter.with_name(f"{adapter.stem}.{fmt}.safetensors")


def export_formats() -> tuple[str, ...]:
    """Every format ``lowdim export`` writes: a LoRA's, and an embedding's (Textual Inversion)."""
    from lowdim_sd.export import FORMATS
    from lowdim_sd.textual_inversion import EXPORT_FORMATS

    return tuple(dict.fromkeys((*FORMATS, *EXPORT_FORMATS)))


def earlier_outputs(out: Path, writes_model: bool, adapters: Sequence[Path] = ()) -> list[Earlier]:
    """What an earlier run left in ``out`` that this run (writing ``model/`` or the ``adapters``) does not write
    again: for a model, an adapter run's adapter and its exports; for adapters, a --full run's model and the
    exports of the adapters they replace (an export shows the adapter it was made from, not the new one)."""
    if writes_model:
        adapter = out / ADAPTER
        found = [Earlier(adapter, _adapter_words(adapter))] if _lowdim_adapter(adapter) else []
        return found + _exports(adapter, "its export" if found else "an earlier adapter's export")
    model = out / MODEL
    found = [Earlier(model, f"the model of an earlier {either('--full', 'TrainJob(full=True)')} run")] \
        if trained_model(model) else []
    return found + [export for adapter in adapters for export in _exports(adapter, "an earlier adapter's export")]


def refuse_earlier(earlier: Sequence[Earlier], own: str) -> None:
    """One line naming the earlier run's outputs, which would pass for this run's ``own`` output (in words)."""
    if not earlier:
        return
    listed = ", ".join(f"{item.path} ({item.what})" for item in earlier)
    it = "it" if len(earlier) == 1 else "them"
    raise LowdimError(f"{listed}: this run would leave {it} beside its {own}, to be taken for this run's; pass "
                      f"{either('--overwrite', 'overwrite=True')} to remove {it}, or "
                      f"{either('choose another --out', 'choose another out')}")


def remove_earlier(earlier: Sequence[Earlier]) -> list[Path]:
    """Remove the earlier run's outputs (``--overwrite`` replaces the whole run) and say which, in one warning."""
    for item in earlier:
        if item.path.is_dir():
            shutil.rmtree(item.path)
        else:
            item.path.unlink(missing_ok=True)
    if earlier:
        listed = ", ".join(f"{item.path} ({item.what})" for item in earlier)
        warnings.warn(f"removed the earlier run's {listed}: {either('--overwrite', 'overwrite=True')} replaces the "
                      f"whole run", stacklevel=3)
    return [item.path for item in earlier]


def adapters_left(out: Path) -> list[Path]:
    """The lowdim adapters in ``out`` a --full run leaves as they are: each but ``adapter.safetensors`` (refused or
    removed as ``earlier_outputs`` says), told by its header."""
    if not out.is_dir():
        return []
    return sorted(path for path in out.glob("*.safetensors") if path.name != ADAPTER and _lowdim_adapter(path))


def warn_adapters_left(out: Path) -> list[Path]:
    """Name, in one warning, the lowdim adapters of an earlier run a --full run leaves beside its model (a
    ``--subjects`` run's NAME.safetensors), so none is taken for this run's; returns them."""
    left = adapters_left(out)
    if left:
        listed = ", ".join(map(str, left))
        these = "lowdim adapters of an earlier run, left as they were" if len(left) > 1 \
            else "a lowdim adapter of an earlier run, left as it was"
        warnings.warn(f"{listed}: {these} beside this run's model", stacklevel=2)
    return left


def _adapter_words(adapter: Path) -> str:
    from lowdim_sd.file_info_parts import part

    space = _metadata(adapter).get("space")  # the header's text: escaped and cut, as show prints it
    return f"an earlier run's adapter, space {part(space)}" if space else "an earlier run's adapter"


def _exports(adapter: Path, what: str) -> list[Earlier]:
    """The files at ``adapter``'s export names whose header says ``lowdim export`` wrote them."""
    return [Earlier(path, what) for path in (export_path(adapter, fmt) for fmt in export_formats())
            if path.is_file() and _exported(path)]


def _exported(path: Path) -> bool:
    from lowdim_sd.file_info import exported_by_lowdim
    from lowdim_sd.file_info_parts import read_header

    try:
        return exported_by_lowdim(read_header(path))
    except (LowdimError, OSError):  # not a readable .safetensors file: not lowdim's
        return False


def _lowdim_adapter(path: Path) -> bool:
    from lowdim.files import FORMAT

    return path.is_file() and _metadata(path).get("format") == FORMAT


def _metadata(path: Path) -> dict[str, str]:
    from lowdim_sd.file_info_parts import read_header

    try:
        return read_header(path).metadata
    except (LowdimError, OSError):
        return {}


def trained_model(folder: Path) -> bool:
    """Whether ``folder`` is a model a ``train --full`` run wrote: its ``lowdim_merge.json`` says so."""
    from lowdim_sd.merged_model import read_merge_record
    from lowdim_sd.model_info import TRAINED

    try:
        record = read_merge_record(folder) if folder.is_dir() else None
    except OSError:  # an unreadable record: not one lowdim can vouch for
        return False
    return record is not None and record.get("made_by") == TRAINED
