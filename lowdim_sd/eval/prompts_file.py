"""An eval folder's prompts file (prompts.json or prompts.csv; the format is in ``folder``'s docstring and
docs/eval.md), read into a :class:`PromptsFile`: each image's prompt and references, and the identifiers CLIP-T
removes. A file that can't be read is an :class:`EvalFolderError` naming the file, entry or line. The error and the
file names live here, not in ``folder``, so that ``reference_images`` raises it without importing ``folder`` (which
imports it); kept apart so folder.py stays small."""

from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim_sd.eval.image_files import EvalWarning
from lowdim_sd.eval.listed_images import listing_problem

PROMPT_FILES = ("prompts.json", "prompts.csv")
# The format, in the errors about it: a wheel has no docs/ to send the reader to.
JSON_EXAMPLE = '{"images": [{"image": "000.png", "prompt": "a photo of a sks face"}], "references": ["face.jpg"]}'


class EvalFolderError(LowdimError):
    """An eval folder that can't be read: no prompts file, a malformed one, or no usable image."""


@dataclass(frozen=True)
class Entry:
    """One line of the prompts file: a generated image, its prompt, and its own references (if any)."""

    image: str
    prompt: str
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptsFile:
    path: Path
    entries: list[Entry]
    token: str | None = None
    references: tuple[str, ...] = ()
    other_tokens: tuple[str, ...] = ()  # the other adapters' words generate recorded: CLIP-T removes them too


def read_prompts(folder: Path) -> PromptsFile:
    """Parse ``folder``'s prompts.json or prompts.csv; raises EvalFolderError naming what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalFolderError(f"eval folder {folder} not found" if not folder.exists() else
                              f"{folder} is not a folder; pass the folder of generated images")
    found = [name for name in PROMPT_FILES if (folder / name).is_file()]
    if len(found) > 1:  # an edited CSV next to generate's JSON would otherwise be ignored without a word
        warnings.warn(EvalWarning(f"{folder} holds both {' and '.join(found)}; using {found[0]} (delete or "
                                  f"rename the other to use it)"), stacklevel=2)
    if found:
        path = folder / found[0]
        return _read_json(path) if path.suffix == ".json" else _read_csv(path)
    raise EvalFolderError(f"{folder} has no {' or '.join(PROMPT_FILES)} saying each image's prompt: write "
                          f"prompts.json as {JSON_EXAMPLE}, or prompts.csv as a header line image,prompt and a row "
                          f"per image (`lowdim generate` writes one; more in docs/eval.md)")


class _RepeatedKey(ValueError):
    pass


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice: {"a.png": ..., "a.png": ...} would drop one."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen[key] = value
    return seen


def _read_json(path: Path) -> PromptsFile:
    try:
        data = json_text.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=_one_value_per_key)
    except _RepeatedKey as repeated:
        raise EvalFolderError(f"{path}: \"{repeated}\" is a key twice in one object (JSON keeps only the "
                              f"last); list each image once") from None
    except UnicodeDecodeError:
        raise EvalFolderError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise EvalFolderError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}, "
                              f"column {error.colno}") from None
    except json_text.NestedTooDeeply:  # [[[[...]]]] past what the parser follows: a RecursionError otherwise
        raise EvalFolderError(f"{path} is not valid JSON: nested too deeply") from None
    if isinstance(data, list):
        data = {"images": data}
    if not isinstance(data, dict) or "images" not in data:
        raise EvalFolderError(f"{path} must be an object with an \"images\" list, such as {JSON_EXAMPLE} (more "
                              f"in docs/eval.md)")
    images = data["images"]
    if isinstance(images, dict):
        images = [_mapped_entry(path, key, value) for key, value in images.items()]
    if not isinstance(images, list):
        raise EvalFolderError(f"{path}: \"images\" must be a list or an object, got {type(images).__name__}")
    token = data.get("token")
    if token is not None and not isinstance(token, str):
        raise EvalFolderError(f"{path}: \"token\" must be a string, got {token!r}")
    entries = [_entry(item, f"{path}: image entry {index}") for index, item in enumerate(images)]
    _refuse_listing_problems(path, entries, [f"image entry {index}" for index in range(len(entries))])
    token, others = (token, ()) if token else _recorded_tokens(data.get("settings"))
    return PromptsFile(path, entries, token or None, _paths(data.get("references", []), f"{path}: references"),
                       others)


def _mapped_entry(path: Path, key: str, value: Any) -> dict[str, Any]:
    """``"000.png": "a prompt"`` or ``"000.png": {"prompt": ...}``: the key is the image. An inner ``"image"``
    naming another file would score that file under the key's name (and leave the key's image unscored)."""
    if not isinstance(value, dict):
        return {"image": key, "prompt": value}
    inner = value.get("image", key)
    if not (isinstance(inner, str) and os.path.normpath(inner) == os.path.normpath(key)):
        raise EvalFolderError(f"{path}: image entry \"{key}\" names another \"image\" inside it ({inner!r}); in "
                              f"this form the key is the image: drop the inner \"image\", or make it the key")
    return {**value, "image": key}


def _recorded_tokens(settings: Any) -> tuple[str | None, tuple[str, ...]]:
    """The word [V] became, as ``lowdim generate`` records it (``settings.token``), and each attached adapter's
    own (``settings.adapters[].token``; several adapters, several words): the identifiers its prompts may hold.
    A record eval only borrows from: what is not a word there is passed over, as the rest of it is."""
    if not isinstance(settings, dict):
        return None, ()
    token, adapters = settings.get("token"), settings.get("adapters")
    token = token if isinstance(token, str) else None
    words = [entry.get("token") for entry in adapters if isinstance(entry, dict)] if isinstance(adapters, list) else []
    others = [word for word in words if isinstance(word, str) and word.strip() and word != token]
    return (token or None), tuple(dict.fromkeys(others))


def _entry(item: Any, where: str) -> Entry:
    if not isinstance(item, dict):
        raise EvalFolderError(f"{where} must be an object with \"image\" and \"prompt\", got {item!r}")
    image, prompt = item.get("image"), item.get("prompt")
    if not isinstance(image, str) or not image:
        raise EvalFolderError(f"{where} has no \"image\" file name")
    if not isinstance(prompt, str):
        raise EvalFolderError(f"{where} ({image}) has no \"prompt\" string")
    return Entry(image, prompt, _paths(item.get("references", []), f"{where} ({image}): references"))


def _paths(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise EvalFolderError(f"{where} must be a list of paths, got {value!r}")
    return tuple(value)


def _read_csv(path: Path) -> PromptsFile:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            # strict: an unclosed quote is an error, not a prompt that swallows the rest of the file
            header, rows = _csv_rows(path, csv.reader(handle, strict=True))
    except UnicodeDecodeError as error:
        raise EvalFolderError(f"{path} is not a readable CSV file: {error}") from None
    if not rows or not {"image", "prompt"} <= set(header):
        raise EvalFolderError(f"{path} needs a header line 'image,prompt' (optionally ',references') and rows")
    entries = []
    for line, row in rows:
        if not row.get("image") or row.get("prompt") is None:
            raise EvalFolderError(f"{path}, line {line}: needs an image file name and a prompt")
        refs = tuple(r.strip() for r in (row.get("references") or "").split(";") if r.strip())
        entries.append(Entry(row["image"].strip(), row["prompt"], refs))
    _refuse_listing_problems(path, entries, [f"line {line}" for line, _ in rows])
    return PromptsFile(path, entries)


def _csv_rows(path: Path, reader: Any) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and each row with the file line it starts on.

    Counted from ``line_num``, not from the row index: blank lines and quoted prompts spanning lines
    would otherwise make errors point above the row they are about.
    """
    header: list[str] = []
    rows: list[tuple[int, dict[str, str]]] = []
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return header, rows
        except csv.Error as error:
            why = "a quoted prompt is never closed" if "end of data" in str(error) else f"not readable CSV: {error}"
            raise EvalFolderError(f"{path}, line {start}: {why}") from None
        end = reader.line_num
        if not row:
            continue
        if not header:
            header = row
            continue
        if any(field.strip() for field in row[len(header):]):  # empty padding cells (spreadsheets) lose nothing
            # zip would drop the extra text: an unquoted comma in a prompt would score a shorter prompt
            raise EvalFolderError(f"{path}, line {start}: {len(row)} fields, the header names {len(header)}; "
                                  f"quote a prompt that holds a comma (\"a [V] face, at night\")")
        rows.append((start, dict(zip(header, row, strict=False))))


def _refuse_listing_problems(path: Path, entries: list[Entry], positions: list[str]) -> None:
    """Images outside the folder, or listed twice (``listed_images``): one line naming the entry."""
    problem = listing_problem(path, [entry.image for entry in entries], positions)
    if problem:
        raise EvalFolderError(problem)
