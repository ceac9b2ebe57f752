"""The values a ``lowdim bench quality`` results folder may hold, checked one by one as a run writes them.

A folder may come from someone else (sent for comparison, edited by hand, from another lowdim version), and its
numbers go straight into a table that reads as fact: so a value of the wrong type or range (a bool where a number
goes, NaN, a negative count, a score list longer than the prompts, a result filed under another row) is damage,
said in one phrase naming the key and the value, which ``stored.read_result`` and ``read_settings`` put in the
file's one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULT_VERSION = 1
# What aggregate and the gallery read from every result; a file without them is as damaged as a cut one.
RESULT_KEYS = ("method", "identity", "reference", "seconds", "bytes", "scores")
# Past this a mean or a variance of a few such numbers overflows to inf; no score, time or size comes near it.
NUMBER_LIMIT = 1e100
METRIC_NAME = re.compile(r"[\w.+@-]+")  # a registered metric's name, as --metrics lists them


class Damaged(ValueError):
    """What is wrong with a stored file, in a phrase naming the key and the value."""


def shown(value: Any) -> str:
    """``value`` as its line names it: quoted, control characters escaped, and short (a score list may be huge)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def printable(name: object) -> str:
    """A file's name for its line: a control character in a stranger's file name shown escaped, not sent to the
    terminal."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in str(name))


def number(value: Any, what: str, low: float | None = 0.0) -> float:
    """A finite real number (no bool, no NaN or inf: JSON's NaN, Infinity and 1e400 read as floats), >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= NUMBER_LIMIT:
        raise Damaged(f"{what} is {shown(value)}, not a finite number")
    if low is not None and value < low:
        raise Damaged(f"{what} is {shown(value)}, below {low:g}")
    return value


def count(value: Any, what: str, low: int | None = 0, high: int | None = None) -> int:
    """A whole number (no bool) from ``low`` to ``high`` (None: no bound)."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) or (
            high is not None and value > high):
        bounds = f" from {low} to {high}" if None not in (low, high) else f" of {low} or more" if low is not None \
            else ""
        raise Damaged(f"{what} is {shown(value)}, not a whole number{bounds}")
    return value


def text(value: Any, what: str, empty: bool = True) -> str:
    if not isinstance(value, str) or not (empty or value):
        raise Damaged(f"{what} is {shown(value)}, not {'text' if empty else 'a name'}")
    return value


def line(value: Any, what: str, most: int) -> str:
    """Text a line shows as it is (an error's, a table's): no control character, which would split it (a newline)
    or restyle the terminal (an escape), and at most ``most`` characters."""
    if not isinstance(value, str) or not value.isprintable() or len(value) > most:
        raise Damaged(f"{what} is {shown(value)}, not one line of text of {most} characters at most")
    return value


def prompt_line(value: Any, what: str) -> str:
    """A prompt: text of one line. It captions gallery.png and is drawn with its token: a newline would split the
    caption, and an escape or a NUL would reach the terminal and the tokenizer as they are. No bound on its length:
    CLIP's tokenizer cuts a long prompt, as every command that draws one does."""
    if not isinstance(value, str) or not value.isprintable():
        raise Damaged(f"{what} is {shown(value)}, not one line of printable text")
    return value


def one_word(value: Any, what: str) -> str:
    """A token, the word [V] stands for in every prompt: one word of printable characters. With a space it would be
    two words in each prompt, which the adapter was not trained on; a control character is refused as for a prompt."""
    if not isinstance(value, str) or not value.isprintable() or len(value.split()) != 1 or value != value.strip():
        raise Damaged(f"{what} is {shown(value)}, not one word of printable text")
    return value


# A path the file systems lowdim runs on can open (Linux's PATH_MAX and NAME_MAX): a run given a longer --model is
# refused before it writes its settings, so a longer one is no name a run recorded.
PATH_MOST, PATH_PART_MOST = 4096, 255


def model_name(value: Any, what: str) -> str:
    """A registered name, hub id or folder, as a run was given it: one line, and a path the system could open."""
    text(value, what, empty=False)
    line(value, what, PATH_MOST)
    if any(len(part.encode()) > PATH_PART_MOST for part in re.split(r"[\\/]", value)):  # either system's separator
        raise Damaged(f"{what} is {shown(value)}, not a model's name: a part of it is over {PATH_PART_MOST} bytes")
    return value


def dtype_name(value: Any, what: str) -> str:
    """A --dtype as a run was given it (checked before it writes its settings): quoted by the load's own refusal,
    which would call it the command's --dtype."""
    from lowdim_sd.devices import DTYPES  # torch: imported only where a settings file is read

    names = ("auto", *DTYPES)
    if not isinstance(value, str) or value not in names:
        raise Damaged(f"{what} is {shown(value)}, not one of {', '.join(names)}")
    return value


def mapping(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise Damaged(f"{what} is {shown(value)}, not a record by name")
    return value


def checked_result(record: Any, path: Path, prompts: int | None, metrics: Sequence[str] | None) -> dict:
    """``record`` as read from ``path`` (results/METHOD/IDENTITY.json), checked; returned with only the scores of
    ``metrics`` (all it scores when None) and ``columns`` the headings this lowdim gives those metrics, a metric
    the run could not load included (its column reads –)."""
    if not isinstance(record, dict) or any(key not in record for key in RESULT_KEYS):
        raise Damaged("not a result: it needs method, identity, reference, seconds, bytes and scores by metric")
    check_place(record, path)
    text(record["reference"], "reference")
    number(record["seconds"], "seconds")
    count(record["bytes"], "bytes", high=2**63)  # a mean of sizes is a float
    for key in ("hypernet_sha256", "device", "looks"):
        if record.get(key) is not None:
            text(record[key], key)
    if record.get("hypernet") is not None:
        recorded_file(record["hypernet"], "hypernet")
    for key in ("columns", "skipped"):  # the file's own words: read by no table, but a wrong type is damage
        for name, words in mapping(record.get(key, {}), key).items():
            text(words, f"{key} of {shown(name)}")
    scores = checked_scores(record["scores"], prompts, metrics or ())
    not_asked = checked_not_asked(record.get("not_asked", {}), scores)
    listed = list(scores if metrics is None else metrics)
    return record | {"scores": {name: scores[name] for name in listed if name in scores}, "columns": headings(listed),
                     "not_asked": {name: not_asked[name] for name in listed if not_asked.get(name)}}


def recorded_file(value: Any, what: str) -> str | dict:
    """A file as a result records it: a path (every result before the recorded-paths policy), or the record
    ``recorded_paths.recorded_file`` makes, ``{"file": ...}`` with ``"shipped_with"``: the model, for one a model
    ships, each text."""
    if isinstance(value, dict) and set(value) <= {"file", "shipped_with"} and "file" in value \
            and all(isinstance(part, str) for part in value.values()):
        return value
    if not isinstance(value, str):
        raise Damaged(f"{what} is {shown(value)}, not a path nor a record of a file")
    return value


def check_place(record: dict, path: Path) -> None:
    """A result is filed under its row and identity: a file naming others would be tabulated as theirs."""
    method, identity = text(record["method"], "method"), text(record["identity"], "identity")
    if method != path.parent.name:
        raise Damaged(f"method is {shown(method)}, but the file is in results/{path.parent.name}")
    if identity != path.stem:
        raise Damaged(f"identity is {shown(identity)}, but the file is {path.name}")
    if not identity.isprintable() or identity.startswith("."):  # a run names it after a reference image's file
        raise Damaged(f"identity {shown(identity)} is not a plain file name")


def checked_scores(scores: Any, prompts: int | None, listed: Sequence[str]) -> dict[str, list[float | None]]:
    """{metric: a score or None (a miss) per prompt}: ``prompts`` of them where the folder's settings say. A metric
    the settings list is registered here; any other must at least be a name."""
    for name, values in mapping(scores, "scores").items():
        if name not in listed and not METRIC_NAME.fullmatch(name):
            raise Damaged(f"scores name a metric {shown(name)}, which is no metric name")
        if not isinstance(values, list):
            raise Damaged(f"{name} scores are {shown(values)}, not a list")
        if prompts is not None and len(values) != prompts:
            raise Damaged(f"{name} has {len(values)} scores for the {prompts} prompts of the settings")
        for index, value in enumerate(values):
            if value is not None:
                number(value, f"{name} score {index}", low=None)
    return scores


def checked_not_asked(not_asked: Any, scores: dict[str, list]) -> dict[str, int]:
    """{metric: pictures it had no question for}: each one of its None scores, so no more than those."""
    for name, pictures in mapping(not_asked, "not_asked").items():
        unscored = sum(value is None for value in scores.get(name, []))
        count(pictures, f"not_asked of {shown(name)}", high=unscored)
    return not_asked


def headings(metrics: Sequence[str]) -> dict[str, str]:
    """{metric: its table heading}: the registered metric's ``column``, or its name for one not registered here."""
    from lowdim.registry import get_registry

    registered = get_registry().metrics
    found = {name: getattr(registered[name].value, "column", None) if name in registered else None
             for name in metrics}
    return {name: heading if isinstance(heading, str) and heading else name for name, heading in found.items()}


def checked_settings(stored: Any) -> dict:
    """settings.json as ``lowdim_sd.bench.quality.settings`` writes it: every key, each of its type."""
    if not isinstance(stored, dict):
        raise Damaged("not a settings record")
    for key, check in SETTINGS.items():
        if key not in stored:
            raise Damaged(f"{key} is missing")
        check(stored[key], key)
    return stored


def prompt_list(value: Any, what: str) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(prompt, str) for prompt in value):
        raise Damaged(f"{what} is {shown(value)}, not a list of prompts")
    for index, prompt in enumerate(value):
        prompt_line(prompt, f"prompt {index}")


def metric_list(value: Any, what: str) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise Damaged(f"{what} is {shown(value)}, not a list of metric names")
    repeated = sorted({name for name in value if value.count(name) > 1})
    if repeated:
        raise Damaged(f"{what} names {shown(repeated[0])} twice")


SETTINGS = {
    "version": lambda value, what: count(value, what, low=1),
    "model": model_name,
    "prompts": prompt_list,
    "metrics": metric_list,
    "token": one_word,
    "seed": lambda value, what: count(value, what, low=None),
    "sample_steps": lambda value, what: count(value, what, low=1),
    "guidance": lambda value, what: number(value, what, low=None),
    "dtype": dtype_name,
}
