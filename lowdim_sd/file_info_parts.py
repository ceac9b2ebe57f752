"""What ``lowdim show`` reads every kind of file with: its header (no tensor is loaded), and metadata text as
the values ``--json`` writes."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING, Any

from lowdim import json_text
from lowdim.errors import LowdimError, first_line
from lowdim.filecheck import printable_name

if TYPE_CHECKING:
    from torch import Tensor


# What ``--json``'s "type" says a file or folder is: one fixed word a script switches on (the prose title, "kind",
# may change its words and holds paths and steps). docs/cli.md's show section lists them, in this order.
FILE_TYPES = {
    "adapter": "a lowdim adapter (personalize, train), or the --out folder holding it",
    "hypernetwork": "a lowdim hypernetwork (train-hypernet), or the --out folder holding it",
    "encoder_features": "an encoder-feature file (encoder-features)",
    "weight_folder": "a weight folder (precompute)",
    "weight_shard": "one shard file of a weight folder",
    "checkpoint": "a checkpoint's step folder (OUT/checkpoints/step-N), finished or cut short",
    "checkpoints_folder": "a run's checkpoints folder (OUT/checkpoints): how many, the newest, and the resume",
    "trained_state": "a checkpoint's trainable.safetensors",
    "optimizer_state": "a checkpoint's optimizer.safetensors, in its step folder or moved out of it",
    "finished_run": "a finished run's --out whose outputs no one file is (train --subjects' adapters, train --full's "
                    "model beside its checkpoints)",
    "stopped_run": "a run's --out stopped before writing its output (--resume continues it)",
    "stopped_precompute": "a precompute's --out stopped before its end (a batch in flight kept, index parts not "
                          "merged, or fewer identities kept than its run was asked for), or that batch's folder: the "
                          "same precompute command again continues it (a batch that diverged: with a lower --lr)",
    "textual_inversion": "a Textual Inversion embedding another tool made",
    "textual_inversion_export": "a Textual Inversion embedding lowdim export wrote",
    "lora": "a LoRA another tool made",
    "lora_export": "a LoRA lowdim export wrote",
    "sd_checkpoint": "a single-file Stable Diffusion checkpoint",
    "merged_model": "a whole model lowdim merge wrote (single file or diffusers folder)",
    "full_model": "a whole model lowdim train --full wrote (OUT/model, or the finished run's OUT with no checkpoint "
                  "left)",
    "pipeline_folder": "a diffusers pipeline folder (problem says why when lowdim cannot load it)",
    "pipeline_part": "a part of a diffusers pipeline (its unet/, vae/, text_encoder/... folder, or the weights "
                     "diffusers reads in one), whose use line names the pipeline folder",
    "registered_model": "a model registered by name (lowdim models)",
    "unknown_safetensors": "a .safetensors file lowdim does not know",
}
# Rows saying lowdim would refuse the file: --json's "problem" is the first one's text.
PROBLEM_ROWS = ("problem", "needs", "damaged", "unfinished", "refused")
# A use line that is a command (a shell line, or the Python call of a non-SD adapter), not advice in prose.
COMMAND_STARTS = ("lowdim ", "lowdim.")
_NOT_KEY = re.compile(r"[^a-z0-9]+")


def json_key(label: str) -> str:
    """A table label as --json's key: snake_case ("trainable params" -> "trainable_params"), so a reworded label is
    a change made here, not at each reader. Labels only: a key a file holds (a recipe's) stays as the file has it."""
    return _NOT_KEY.sub("_", label.lower()).strip("_")


@dataclass
class FileInfo:
    path: Path
    kind: str  # one line: what it is, for people (the table's title)
    rows: list[tuple[str, str]] = field(default_factory=list)  # (field, value as the table shows it), in order
    use: str = ""  # the command that uses it, when there is one
    # A field's value for --json where the table's text is not it: programs read numbers, booleans and
    # objects, not "54,784", "false" or JSON inside a string.
    values: dict[str, object] = field(default_factory=dict)
    type: str = field(kw_only=True)  # one of FILE_TYPES: required, so no new kind of file goes without one

    def __post_init__(self) -> None:
        if self.type not in FILE_TYPES:
            raise ValueError(f"FileInfo type {self.type!r} is none of FILE_TYPES")
        # A value from a file (a token, a name) may hold an escape sequence that would recolour or rewrite the
        # terminal: the table shows it escaped (with its length where cut), --json the value itself (JSON escapes
        # it). A row quoting a load's refusal is bounded here, for every kind of file: the load's words quote the
        # file's own text whole.
        for place, (name, value) in enumerate(self.rows):
            if not isinstance(value, str):
                continue
            shown = refusal(value) if name in REFUSAL_ROWS else value if value.isprintable() else summary(value, 120)
            if shown != value:
                self.values.setdefault(name, value)
                self.rows[place] = (name, shown)

    def table_rows(self) -> list[tuple[str, str]]:
        """The rows as the table shows them: a field a file names (a recipe's key) escaped where it holds a line break
        or an escape code, as ``__post_init__`` escapes a value; --json keeps the name whole."""
        return [(name if name.isprintable() else summary(name, 120), value) for name, value in self.rows]

    def as_dict(self) -> dict:
        """--json's object: "type" (one of FILE_TYPES), "fields" under snake_case keys (a group's, "recipe: steps",
        one object: {"recipe": {"steps": ...}}, its keys as the file names them), "problem" (why lowdim would refuse
        it, or None), "command" (the use line where it is a command, else None); "kind" and "use" as printed."""
        fields: dict[str, Any] = {}  # a group's place is a dict of its own
        for name, value in self.rows:
            group, _, key = name.partition(GROUPED)
            place = fields.setdefault(json_key(group), {}) if key else fields
            place[key or json_key(name)] = self.values.get(name, value)
        problem = next((self.values.get(name, value) for name, value in self.rows if name in PROBLEM_ROWS), None)
        return {"path": str(self.path), "type": self.type, "kind": self.kind, "fields": fields, "problem": problem,
                "use": self.use, "command": self.use if self.use.startswith(COMMAND_STARTS) else None}


DTYPE_NAMES = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64"}
# torch's dtype for each name safetensors gives one, as its torch reader maps them: what a load reads the tensor as,
# so show checks it with the load's own code. A name torch has no dtype for (F6_E2M3) no load can read at all.
TORCH_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16",
                "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
                "F8_E8M0": "float8_e8m0fnu", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
                "C64": "complex64", "F4": "float4_e2m1fn_x2"}
GROUPED = ": "  # a row named "group: key" is one of a group (a recipe's, a training's): one object in --json


@dataclass
class Header:
    metadata: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str] = field(default_factory=dict)  # each tensor's own, as safetensors names it ("F32")

    def dtype(self, keys: list[str]) -> str | None:
        """The dtype ``keys`` are stored in, as lowdim names it ("fp32"; "fp16+fp32" when they differ), read from
        the tensors themselves, not from what the metadata claims; None: no such tensor."""
        found = sorted({DTYPE_NAMES.get(self.dtypes.get(key, "?"), self.dtypes.get(key, "?").lower()) for key in keys})
        return "+".join(found) or None

    def meta_tensors(self) -> dict[str, Tensor]:
        """Each tensor on the meta device, of its stored shape and dtype (no value is read), for a load's own checks;
        a LowdimError naming the first whose dtype this torch has no tensor for, which no load can read."""
        import torch

        tensors = {}
        for key, shape in self.shapes.items():
            name = self.dtypes.get(key, "F32")
            dtype = getattr(torch, TORCH_DTYPES.get(name, ""), None)
            if not isinstance(dtype, torch.dtype):
                raise LowdimError(f"tensor {printable_name(key)} holds {name}, which torch cannot read")
            tensors[key] = torch.empty(shape, dtype=dtype, device="meta")
        return tensors

    @property
    def values(self) -> int:
        total = 0
        for shape in self.shapes.values():
            count = 1
            for size in shape:
                count *= size
            total += count
        return total


def read_header(path: Path) -> Header:
    from safetensors import safe_open

    from lowdim.file_reading import EMPTY, is_empty

    if is_empty(path):  # safetensors would say "header too small"
        raise LowdimError(f"{path}: not a readable .safetensors file ({EMPTY}: no header to read)")
    try:
        with safe_open(str(path), framework="pt") as file:
            slices = {key: file.get_slice(key) for key in file.keys()}  # noqa: SIM118
            return Header(dict(file.metadata() or {}), {key: tuple(part.get_shape()) for key, part in slices.items()},
                          {key: str(part.get_dtype()) for key, part in slices.items()})
    except Exception as error:  # safetensors raises its own error types for every way a file is broken
        raise LowdimError(f"{path}: not a readable .safetensors file ({first_line(error)})") from None


# Metadata text shown as it is up to this length: a hub id (at most 96 characters), an absolute folder path, a token.
# A longer value is a stranger's (100 KB of one token): cut, escaped and its length said; --json gives it whole.
LONGEST_SHOWN = 256


def bounded(text: str) -> str:
    """Metadata text for a table cell: as it is up to ``LONGEST_SHOWN`` characters (``FileInfo`` escapes one that
    is not printable), else one short escaped line with its length."""
    return text if len(text) <= LONGEST_SHOWN else summary(text, 120)


def part(text: str) -> str:
    """Text for the part of a cell that says more after it (a folder, then "(missing: no such folder)"): ``bounded``
    and escaped here, as ``FileInfo``'s escaping of the whole cell would quote the rest with it."""
    return bounded(text) if text.isprintable() else summary(text, 120)


def text_rows(meta: dict[str, str], labels: dict[str, str]) -> tuple[list[tuple[str, str]], dict[str, object]]:
    """A row for each metadata key in ``labels`` (key -> label; '?' where missing), its text ``bounded``, and the
    whole text of each for --json, which a reader's own value of a row (a number, an object) overrides."""
    texts = {label: meta.get(key) or "?" for key, label in labels.items()}
    return [(label, bounded(text)) for label, text in texts.items()], dict(texts)


def listing(shown: list[str], most: int = 5) -> str:
    """Texts from a file (merged adapters, tokens), each as the table shows it (``bounded``), as one row: the first
    ``most`` and how many more there are, as a stranger's record may list ten thousand. --json gives them all."""
    more = f" and {len(shown) - most:,} more" if len(shown) > most else ""
    return ", ".join(shown[:most]) + more


def summary(text: str, longest: int = 60) -> str:
    """A refused record or an overlong text as one short escaped line (a scales list nested a thousand deep, a 100 KB
    token: no table cell), with its length where it is cut; --json gives the text itself."""
    shown = printable_name(text, longest)
    return shown if shown == ascii(text) else f"{shown} ({len(text):,} characters)"


# Rows saying why a load refuses the file (or what it needs first), in the load's words: those quote what the file
# holds whole (a version, a space's name), so a stranger's file makes them 100 KB. The load's own words run to a few
# hundred characters, five tensor names and a path included; past LONGEST_REFUSAL they are cut with their length.
REFUSAL_ROWS = ("problem", "needs", "damaged")
LONGEST_REFUSAL = 2_000


def refusal(text: str) -> str:
    """A load's refusal for a table cell: as it is up to ``LONGEST_REFUSAL`` printable characters, else one escaped
    line (``summary``) with its length where it is cut; --json gives it whole."""
    return text if text.isprintable() and len(text) <= LONGEST_REFUSAL else summary(text, 500)


def shown_whole(text: str) -> bool:
    """Whether the table shows ``text`` as it is: printable, and not cut by ``bounded``."""
    return text.isprintable() and bounded(text) == text


def command_word(text: str, placeholder: str) -> str:
    """``text`` quoted as one word of a ``use it:`` command, where the table shows it as it is; else ``placeholder``
    (MODEL, PROMPT), as a value shown cut or escaped is no word a user can copy."""
    return quote(text) if text and shown_whole(text) else placeholder


def one_line(text: str) -> str:
    """A path or a sentence naming one (a title, a shard's folder) as printed: as it is where printable, else one
    short escaped line (``summary``), as a file or folder name may hold a line break or an escape code."""
    return text if text.isprintable() else summary(text, 120)


# A quoted word of a shell command: shlex.quote's '...' (no quote inside), or the "'" it joins them with.
QUOTED_WORD = re.compile(r"'[^']*'|\"[^\"]*\"")
ANSI_C_NAMED = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def pasteable(command: str) -> str:
    """A ``use it:`` command as printed: each single-quoted word holding an unprintable character (a path's line
    break or escape code) written as bash's ANSI-C ``$'...'`` word instead, that character as its escape. Pasted
    in bash (or zsh, ksh) it is the same argument, where a placeholder would leave the user to retype the path; it
    shows on one line, and no escape code reaches the terminal. --json keeps the command as written."""
    if command.isprintable():
        return command
    words = QUOTED_WORD.sub(lambda word: word[0] if word[0].isprintable() or word[0][0] == '"' else
                            ansi_c_word(word[0][1:-1]), command)
    # Never met (every path is quote()d), but no raw escape code is printed either way.
    return "".join(char if char.isprintable() else ansi_c_char(char) for char in words)


def ansi_c_word(text: str) -> str:
    """``text`` as one bash ``$'...'`` word."""
    return "$'" + "".join(ansi_c_char(char) for char in text) + "'"


def ansi_c_char(char: str) -> str:
    """``char`` inside a ``$'...'`` word. A file name's byte that is no UTF-8 (read as a lone surrogate, Python's
    surrogateescape) is written as that byte, so the word names the file on disk; each escape has its most digits,
    so a hex digit after it is never read into it."""
    code = ord(char)
    if char in ANSI_C_NAMED:
        return ANSI_C_NAMED[char]
    if char.isprintable():
        return char
    if code < 0x80 or 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code & 0xFF:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def parsed_json(text: str | None, fallback: object) -> Any:
    """``text`` as JSON, else ``fallback``: any JSON value (Any, as json.loads), since metadata edited by hand may
    hold another shape than the writer's; the readers' TypeError or KeyError is then ``describe``'s one line."""
    try:
        return json_text.loads(text) if text else fallback
    except ValueError:  # nested too deeply included
        return fallback


def json_object(text: str | None) -> dict:
    """``text`` as a JSON object, else {}: a record (an adapter's recipe, a training's extras) that is no object
    is shown as none, as loading leaves it unread."""
    value = parsed_json(text, {})
    return value if isinstance(value, dict) else {}


def compact(value: object) -> str:
    # stripped: a recipe's looks are stored as the words that follow "[V] face", leading space and all
    return value.strip() if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)


def number(text: str | None) -> object:
    """A number stored as metadata text, as a number (None: missing; text that is no finite number: as it is, since
    --json writes NaN and Infinity as no JSON parser outside Python reads them)."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else text


def config_object(config: object) -> Any:
    """A config stored as JSON text (or already parsed), as an object for --json."""
    return parsed_json(config, config or None) if isinstance(config, str) else config


def space_object(name: object, config: object) -> dict:
    return {"name": name, "config": config_object(config)}


def size_text(path: Path) -> str:
    return f"{path.stat().st_size:,} bytes"


def hypernet_problem(path: Path, header: Header) -> str:
    """Why every load refuses the file ("": its version, header and tensors pass): the loader's own checks, so show
    words it as the load would. Its tensors are checked as meta tensors of the header's shapes and dtypes (as an
    adapter's are, ``adapter_problems.tensor_problem``); their values are ``hypernet_values_problem``'s to read."""
    from lowdim.file_fit import format_version_problem
    from lowdim.hyper.storage import FORMAT_VERSION, check_stored_tensors

    if problem := format_version_problem(header.metadata, "hypernetwork", FORMAT_VERSION):
        return problem
    try:
        check_stored_tensors(header.metadata, header.meta_tensors(), path)
    except LowdimError as error:
        return str(error).removeprefix(f"{path}: ")
    except Exception as error:  # transformers' or a plugin head's own refusal of a stranger's sizes (the load's too)
        return f"its network cannot be built from the configs it records ({type(error).__name__}: {first_line(error)})"
    return ""


# Show reads a hypernetwork's values to check them finite, as every load does: a 100 MB file (an encoder's weights
# in it) takes well under a second. A stranger's far larger file is read no longer than this, then said unchecked.
VALUES_SECONDS = 3.0
VALUES_NOT_CHECKED = ("not all checked for NaN or Inf here: reading them takes longer than show spends (every load "
                      "checks them)")


def hypernet_values_problem(path: Path) -> str | None:
    """The load's words for the first tensor holding NaN or Inf ("": every value is finite; None: show stopped after
    ``VALUES_SECONDS``), by the load's own check (``lowdim.hyper.safety.check_tensors``), one tensor at a time, so
    no more than the largest is held. Run once the header's tensors are found to fit the network it builds."""
    from safetensors import safe_open

    from lowdim.hyper.safety import check_tensors

    deadline = time.monotonic() + VALUES_SECONDS
    try:
        with safe_open(str(path), framework="pt") as file:
            for key in file.keys():  # noqa: SIM118
                if time.monotonic() >= deadline:
                    return None
                tensor = {key: file.get_tensor(key)}
                check_tensors(tensor, tensor, path)  # against itself: names and shapes were checked; values here
    except LowdimError as error:
        return str(error).removeprefix(f"{path}: ")
    except Exception as error:  # safetensors' own error types: a file changed since its header was read
        return f"not a readable safetensors file (truncated or corrupted?): {first_line(error)}"
    return ""
