"""What a user can type wrong on the page, refused in one line that names the control, in the page's words.

Gradio's own range checks would print a traceback on the server's terminal and say ``Value 0 is less than
minimum value 1.`` without naming the control, so the page's numbers are checked here (``page_widgets``
turns Gradio's off). Nothing here imports Gradio or torch.
"""

from __future__ import annotations

import re
from pathlib import Path

from lowdim.errors import LowdimError

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit number
# Each number control's range: (least, most); the page draws its sliders with these, so what it offers is
# what the studio accepts.
MAX_FINETUNE_STEPS = 2000  # over three times the from-zero recipe (600): more is hours of a CPU, not a better face
RANKS = (1, 32)
DENOISING_STEPS = (1, 100)
PICTURES = (1, 16)

# CLI advice the page cannot follow as written, and what to say instead (the page has no flags).
PAGE_TERMS = (
    (", or pass --no-crop to use the image as it is", ""),
    ("then pass --model PATH", "then type its path in the Model box"),
    ("pass it with --model (-m)", "type its path in the Model box"),
    ("--model takes", "the Model box takes"),
    ("goes to --image", "goes to the Face photo box"),
)


class NotOffered(LowdimError):
    """A value a list on the page does not offer (a face, an earlier run): only a client other than the page
    sends one. Said as an error, never as a note on the page, since it is the request that is wrong."""


def check_number(value: float | None, label: str, least: int, most: int | None = None) -> int:
    """``value`` as a whole number from ``least`` to ``most``, else one line naming the control ``label``."""
    if value is None:
        raise LowdimError(f"{label} is empty: type a whole number")
    number = int(value)
    if number != value:
        raise LowdimError(f"{label} must be a whole number, got {value:g}")
    if most is None and number < least:
        raise LowdimError(f"{label} must be {least} or more, got {number}")
    if most is not None and not least <= number <= most:
        raise LowdimError(f"{label} must be {least} to {most}, got {number}")
    return number


def check_seed(seed: float | None, label: str = "Seed", count: int = 1) -> int:
    """The seed typed, 0 to MAX_SEED; with ``count`` pictures drawn from it on, their last seed must fit too."""
    number = check_number(seed, label, 0, MAX_SEED)
    if number + count - 1 > MAX_SEED:
        raise LowdimError(f"{label} {number} leaves no room for {count} pictures, whose seeds count up from it: "
                          f"at most {MAX_SEED - count + 1}")
    return number


def check_face(value: object) -> int | None:
    """The *Face* list's value as a face's number (None: none chosen). Its list takes any value, since
    Gradio's own check of one would print a traceback and name no control; a typed "2" is face 2."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():  # a JSON client's 2.0 is face 2, as the page's 2 is
        value = int(value)
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        raise NotOffered(f"Face must be the number of a face found in the photo (0 is the largest), got {value!r}")
    return int(text)


def installed_models() -> list[str]:
    """Each installed model once, by its own name: an alias (sd1.5 for sd15) still works when typed."""
    from lowdim.registry import get_registry

    seen, names = set(), []
    for name, entry in get_registry().backends.items():
        if id(entry.value) not in seen:
            seen.add(id(entry.value))
            names.append(name)
    return names


def check_model(model: str) -> str:
    """An installed backend, a folder or file here, or a hub id; anything else is refused by name."""
    from lowdim.registry import get_registry

    model = model.strip()
    if model in get_registry().backends or Path(model).expanduser().exists():
        return model
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not model.startswith((".", "/")):
        return model  # a hub id: loading says whether it is reachable
    raise LowdimError(f"model '{model}' is neither an installed model ({', '.join(installed_models())}) nor a "
                      f"folder or file on this machine")


def in_page_terms(message: str) -> str:
    """A library's advice said with the page's controls instead of the CLI's flags."""
    for cli, page in PAGE_TERMS:
        message = message.replace(cli, page)
    return message
