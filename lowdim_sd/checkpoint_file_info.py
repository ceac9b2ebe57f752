"""``lowdim show`` of a checkpoint's optimizer state (``checkpoints/step-NNNNNN/optimizer.safetensors``, which
``lowdim train`` and ``lowdim train-hypernet`` write alike): whose it is, its step and parameter count from its
metadata, and how a run continues from it. Its header holds no format key, so it is known by its layout: the
metadata ``checkpoint_reading.optimizer_metadata`` writes, and tensors named ``<param index>.<name>``."""

from __future__ import annotations

import re
from pathlib import Path
from shlex import quote

from lowdim_sd.file_info_parts import FileInfo, Header, bounded, number, size_text

OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_METADATA = ("step", "parameters", "stateful")
_ENTRY = re.compile(r"^(\d+)\.(\w+)$")
# The step folder's other file says which command wrote it (lowdim_sd.checkpoints: save, save_hypernet).
WRITERS = {"hypernet.safetensors": "train-hypernet", "trainable.safetensors": "train"}


def is_optimizer_state(header: Header) -> bool:
    """Whether a header is a lowdim checkpoint's optimizer state: its metadata keys and entry names."""
    return (all(key in header.metadata for key in OPTIMIZER_METADATA)
            and all(_ENTRY.match(key) for key in header.shapes))


def optimizer_state_info(path: Path, header: Header) -> FileInfo:
    meta = header.metadata
    step, parameters, stateful = (number(meta.get(key)) for key in OPTIMIZER_METADATA)
    names = sorted({match.group(2) for key in header.shapes if (match := _ENTRY.match(key))})
    # Texts from the file, each cut where a stranger's runs to 100 KB (a step, an entry's name); --json: whole.
    listed = ", ".join(map(bounded, names[:5])) + (", ..." if len(names) > 5 else "")
    shown_step = bounded(str(step))
    folder = path.parent
    writer = _writer(path)
    whose = f"a lowdim {writer} checkpoint" if writer else "a lowdim checkpoint"
    rows = [("step", shown_step),
            ("parameters", f"{bounded(str(parameters))}, {bounded(str(stateful))} holding a state ({listed})"),
            ("tensors", f"{len(header.shapes):,} holding {header.values:,} values"), ("file", size_text(path))]
    values = {"step": step, "parameters": {"count": parameters, "with a state": stateful},
              "tensors": {"count": len(header.shapes), "values": header.values},
              "file": {"bytes": path.stat().st_size}}
    if writer:  # a resume with other options is refused (checkpoints.check_resume): the run's own, then --resume
        rows.append(("resumed by", f"the command that wrote it, plus --resume: it continues from the newest "
                                   f"checkpoint in {folder.parent.parent}"))
        use = f"lowdim {writer} ... -o {quote(str(folder.parent.parent))} --resume"
    else:  # moved out of its step folder: no run finds it there
        use = (f"a run resumes from it in its own OUT/checkpoints/step-{step:06d} folder (the command that wrote "
               f"it, plus --resume)" if isinstance(step, int) else "")
    return FileInfo(path, f"the optimizer state of {whose} (step {shown_step})", rows, use, values)


def _writer(path: Path) -> str | None:
    """The command whose checkpoint holds ``path``: by the step folder it is in and the file beside it."""
    folder = path.parent
    if path.name != OPTIMIZER_FILE or not re.fullmatch(r"step-\d+", folder.name) or folder.parent.name != "checkpoints":
        return None
    return next((writer for sibling, writer in WRITERS.items() if (folder / sibling).is_file()), None)
