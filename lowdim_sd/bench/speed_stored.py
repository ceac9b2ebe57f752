"""What a ``lowdim bench speed`` OUT holds, read back and checked: settings.json and one file per measurement.

The folder may come from someone else (sent for comparison, edited by hand, cut short by a full disk), and its
numbers go straight into a table that reads as fact. So each value is checked against what the writer writes,
its type and its range, and a file that fails is one line naming it and the way out, on ``--no-run`` and on a
resume alike. A measurement's median and quartiles are derived from its samples, so they are recomputed from them
(a stored median that disagrees with its samples is damage: which of the two is right cannot be known).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim_sd.bench.speed_setup import SCALES, Settings
from lowdim_sd.bench.speed_timing import record
from lowdim_sd.bench.stored_values import count, line, shown

DTYPES = ("fp32", "fp16", "bf16")  # as resolved: settings.json never holds "auto"
DEVICE = re.compile(r"[a-z]+(:[0-9]+)?")  # cpu, cuda, cuda:1, mps: what str(torch.device) gives
RERUN = re.compile(r"--only [a-z0-9-]+")  # what the writer stamps on a skipped row: its task, retried
# 31 years: a timing past it is damage, and every median, sum and ratio of timings below it stays a finite float
# (the median of two 1e308 samples is already infinite).
MAX_SECONDS = 1e9
MAX_BYTES = 2**63  # what torch and /proc count memory in
# A machine record's texts (a GPU's name, versions, the platform) are a few dozen characters; a resume's refusal
# quotes them.
MACHINE_TEXT_MOST = 200


def read_measurement(path: Path) -> dict:
    """The measurement stored in ``path``, as the writer wrote it, with its median and quartiles recomputed from
    its samples; a damaged one is one line naming the file and the way out."""
    try:
        return _measurement(_load(path))
    except (OSError, ValueError) as why:  # ValueError: JSONDecodeError, UnicodeDecodeError and the checks here
        raise LowdimError(f"{path}: damaged measurement ({why}); delete it and rerun (without --no-run) to measure "
                          f"it again") from None


def read_settings(path: Path, out: Path) -> dict | None:
    """OUT/settings.json (the settings and the machine of the measurements in ``out``), None when there is none;
    a damaged one is one line naming it."""
    if not path.is_file():
        return None
    try:
        return _settings(_load(path))
    except (OSError, ValueError) as why:
        raise LowdimError(f"{path}: damaged ({why}); it records the settings of the measurements in {out}: "
                          f"restore it, or measure into another --out") from None


def read_model_scale(path: Path) -> str | None:
    """The scale of the model saved beside ``path``, its marker (written last: None when there is none, a save cut
    short); a damaged one is one line naming it and the way out, as is one that is no file (a folder, a link to
    nothing), which writing the marker after a build would fail on."""
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        if not path.is_file():
            raise ValueError(_not_a_file(path))
        stored = _load(path)
        if not isinstance(stored, dict) or "scale" not in stored:
            raise ValueError("not a speed model's marker: it needs scale")
        if not (isinstance(stored["scale"], str) and stored["scale"] in SCALES):
            raise ValueError(f"scale is {_shown(stored['scale'])}, not one of {', '.join(SCALES)}")
        return stored["scale"]
    except (OSError, ValueError) as why:
        raise LowdimError(f"{path}: damaged ({why}); it marks the model in {path.parent} as saved whole: delete it, "
                          f"and a rerun builds the model again") from None


def _not_a_file(path: Path) -> str:
    """What stands at ``path`` instead of a file (it exists, or is a link)."""
    if path.is_dir():
        return "a folder, not a file"
    if not path.exists():
        return "a link to nothing"
    return "not a regular file"


def _load(path: Path) -> Any:
    """JSON proper: NaN, Infinity and numbers past a float's range (1e400) are refused, as no writer makes them."""
    return json_text.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_not_a_number,
                           parse_float=_finite)


def _not_a_number(constant: str) -> float:
    raise ValueError(f"{constant} is not a number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is past a float's range")
    return value


def _measurement(entry: Any) -> dict:
    if not isinstance(entry, dict):
        raise ValueError("not a measurement: it needs label, and seconds with samples, or skipped with its reason")
    label = _text(entry, "label")
    argv = _argv(entry)
    if "skipped" in entry:
        return {**_skipped(entry, label), **argv}
    samples = _present(entry, "samples")
    if not isinstance(samples, list) or not samples or not all(_seconds(value) for value in samples):
        raise ValueError(f"samples is {_shown(samples)}, not a list of seconds (numbers from 0 to {MAX_SECONDS:,.0f})")
    stored = _present(entry, "seconds")
    measured = record(label, samples)  # the writer's own median and quartiles
    if not _seconds(stored) or not math.isclose(stored, measured["seconds"], rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"seconds is {_shown(stored)}, not the median of its samples ({measured['seconds']:.6g})")
    detail = entry.get("detail", {})
    if not isinstance(detail, dict):
        raise ValueError(f"detail is {_shown(detail)}, not a JSON object")
    peak = entry.get("peak_bytes", 0)
    if not (_whole(peak) and 0 <= peak <= MAX_BYTES):
        raise ValueError(f"peak_bytes is {_shown(peak)}, not a count of bytes")
    return {**measured, "detail": detail, **({"peak_bytes": peak} if "peak_bytes" in entry else {}), **argv}


def _skipped(entry: dict, label: str) -> dict:
    """A row that could not be measured: its reason, and whether (and how) a rerun retries it."""
    reason = _text(entry, "skipped")
    if entry.get("seconds") is not None:
        raise ValueError(f"skipped, yet seconds is {_shown(entry['seconds'])}")
    found: dict[str, object] = {"label": label, "seconds": None, "skipped": reason}
    if "retry" in entry:
        if not isinstance(entry["retry"], bool):
            raise ValueError(f"retry is {_shown(entry['retry'])}, not true or false")
        found["retry"] = entry["retry"]
    if "rerun" in entry:
        if not (isinstance(entry["rerun"], str) and RERUN.fullmatch(entry["rerun"])):
            raise ValueError(f"rerun is {_shown(entry['rerun'])}, not '--only TASK'")
        found["rerun"] = entry["rerun"]
    return found


def _argv(entry: dict) -> dict:
    """The command that measured it (None or absent: made before commands were recorded)."""
    if "argv" not in entry:
        return {}
    argv = entry["argv"]
    if argv is not None and not (isinstance(argv, list) and all(isinstance(part, str) for part in argv)):
        raise ValueError(f"argv is {_shown(argv)}, not the command line as a list of text")
    return {"argv": argv}


def _settings(stored: Any) -> dict:
    fields = Settings.__dataclass_fields__.keys()
    if not isinstance(stored, dict) or stored.keys() - {"machine"} != fields:
        raise ValueError(f"not the settings of a speed run: it needs {', '.join(fields)} and machine")
    problems = {
        "scale": stored["scale"] in SCALES if isinstance(stored["scale"], str) else False,
        "device": isinstance(stored["device"], str) and DEVICE.fullmatch(stored["device"]) is not None,
        "dtype": isinstance(stored["dtype"], str) and stored["dtype"] in DTYPES,
        "resolution": _whole(stored["resolution"]) and stored["resolution"] >= 8 and stored["resolution"] % 8 == 0,
        "repeats": _whole(stored["repeats"]) and stored["repeats"] >= 1,
    }
    wanted = {"scale": f"one of {', '.join(SCALES)}", "device": "a device such as cpu or cuda:0",
              "dtype": f"one of {', '.join(DTYPES)}", "resolution": "a whole number of pixels, a multiple of 8",
              "repeats": "a whole number >= 1"}
    for key, fine in problems.items():
        if not fine:
            raise ValueError(f"{key} is {_shown(stored.get(key))}, not {wanted[key]}")
    _machine(stored.get("machine", {}))  # absent: a folder from before machines were recorded
    return stored


def _machine(machine: Any) -> None:
    """What measured the folder, as ``speed_setup.machine`` records it: the thread count, and the rest text in one
    short line each (None: no GPU, a package not installed)."""
    if not isinstance(machine, dict):
        raise ValueError(f"machine is {_shown(machine)}, not a JSON object")
    for key, value in machine.items():
        if key == "threads":
            count(value, f"machine {shown(key)}", low=1)
        elif value is not None:
            line(value, f"machine {shown(key)}", MACHINE_TEXT_MOST)


def _present(entry: dict, key: str) -> Any:
    if key not in entry:
        raise ValueError(f"no {key}")
    return entry[key]


def _text(entry: dict, key: str) -> str:
    value = _present(entry, key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is {_shown(value)}, not text")
    return value


def _seconds(value: Any) -> bool:
    """A number of seconds from 0 to MAX_SECONDS (JSON's true is not one; NaN fails both comparisons)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_SECONDS


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """A stranger's value in one short line: its repr, cut (a list of a million samples is not shown whole)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
