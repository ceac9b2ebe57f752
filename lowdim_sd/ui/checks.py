"""What a user can type wrong on the page, refused in one line that names the control, in the page's words.

Gradio's own range checks would print a traceback on the server's terminal and say ``Value 0 is less than
minimum value 1.`` without naming the control, so the page's numbers are checked here (``page_parts``
turns Gradio's off). Nothing here imports Gradio or torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from lowdim.atomic import shortened
from lowdim.errors import LowdimError
from lowdim.paths import expand_user

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit number
# Each number control's range: (least, most); the page draws its sliders with these, so what it offers is
# what the studio accepts.
MAX_FINETUNE_STEPS = 2000  # over three times the from-zero recipe (600): more is hours of a CPU, not a better face
RANKS = (1, 32)
DENOISING_STEPS = (1, 100)
PICTURES = (1, 16)

CLIP_METRICS = ("clip-i", "clip-t")  # the metrics the one CLIP model serves
CLIP_ADVICE = ", or pass --clip-model PATH to a local copy"  # eval's hub line for the CLIP model
MODEL_EMPTY = "--model is empty: give an installed model's name or a path"
# CLI advice the page cannot follow as written, and what to say instead (the page has no flags).
PAGE_TERMS = (
    (", or pass --no-crop to use the image as it is", ""),
    ("then pass --model PATH", "then type its path in the Model box"),
    ("pass it with --model (-m)", "type its path in the Model box"),
    ("--model takes", "the Model box takes"),
    ("goes to --image", "goes to the Face photo box"),
    (MODEL_EMPTY, "the Model box is empty: pick an installed model or type a path"),
    ("unless --steps", "unless Finetune steps is set"),  # a run's note: its finetune's length
    # How to draw's short form (start=, end=, te=, ca=), checked as generate's flags are
    ("after --adapter-start (", "after its start ("),
    ("--adapter-start", "How to draw's start"),
    ("--adapter-end", "How to draw's end"),
    ("--text-encoder-scale", "How to draw's te"),
    ("--cross-attention-scale", "How to draw's ca"),
    # Evaluate: its Metrics box (never empty to eval: one with no name in it means what it started with), and
    # the Reference photo it passes as eval's --references
    ("--metrics names", "the Metrics box names"),
    (" (--references)", " (the Reference photo)"),
    # a metric's model not to be had offline (eval's hub line): the page takes no model path, only fewer metrics
    (", or pass --dino-model PATH to a local copy", ", or take dino out of the Metrics box"),
    # (with the metrics asked known, ``clip_advice`` names only those: Evaluate's own lines)
    (CLIP_ADVICE, ", or take clip-i and clip-t out of the Metrics box"),
    ("score them with --metrics ", "score them with the Metrics box set to "),
)
# A run's notes (warnings written with the CLI's words) whose advice holds a number or a path: the page's Draw
# section is its way to draw, and how many Pictures it draws is the page's batch.
PAGE_PATTERNS = (
    (re.compile(r"\(`lowdim generate --batch (\d+)` starts there\)"),
     lambda found: f"(in Draw below, {_fit_one_call(int(found[1]))})"),
    (re.compile(r"draw it with `lowdim generate -a [^`]+`, e\.g\. at --dtype fp16"),
     lambda found: "draw it with Draw below, with fewer Pictures"),
)


def _fit_one_call(count: int) -> str:
    return "1 Picture fits one call" if count == 1 else f"{count} Pictures or fewer fit one call"


class NotOffered(LowdimError):
    """A value a list on the page does not offer (a face, an earlier run): only a client other than the page
    sends one. Said as an error, never as a note on the page, since it is the request that is wrong."""


def is_empty(value: object) -> bool:
    """Whether a control sent its empty value: None (an emptied number field, or null from a client other than
    the page) or a blank text."""
    return value is None or isinstance(value, str) and not value.strip()


def as_number(value: object) -> int | float | None:
    """``value`` as the number it is or spells ("2", " 2.5 "), None when it is none: a bool, a list, other text.
    The page's own controls send numbers; only a client other than the page sends the rest."""
    if isinstance(value, bool):  # an int to Python, but no number a control means
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value.strip())
            except ValueError:
                pass
    return None


def shown(value: object) -> str:
    """A value as a line quotes it: 2.5, abc, None."""
    return f"{value:g}" if isinstance(value, float) else str(value).strip()


def whole_number(value: object, label: str) -> int:
    """``value`` as an int, never rounded nor cut: 2 and 2.0 (a JSON client's 2) are 2; a fraction, NaN, text or
    a bool is one line naming the control ``label``, as is an empty field."""
    if is_empty(value):
        raise LowdimError(f"{label} is empty: type a whole number")
    number = as_number(value)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, int):
        raise LowdimError(f"{label} must be a whole number, got {shown(value)}")
    return number


def real_number(value: object, label: str) -> float:
    """``value`` as a finite float (a weight such as the adapter's scale), else one line naming ``label``."""
    number = as_number(value)
    if number is None or not _finite(number):
        raise LowdimError(f"{label} must be a number, got {shortened(shown(value))}")
    return float(number)


def _finite(number: int | float) -> bool:
    """Whether ``number`` is a finite float or fits one: a whole number past a float's range (a client's "1" and
    400 zeros) is none, where ``math.isfinite`` would raise OverflowError."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def check_number(value: object, label: str, least: int, most: int | None = None) -> int:
    """``value`` as a whole number from ``least`` to ``most``, else one line naming the control ``label``."""
    number = whole_number(value, label)
    if most is None and number < least:
        raise LowdimError(f"{label} must be {least} or more, got {number}")
    if most is not None and not least <= number <= most:
        raise LowdimError(f"{label} must be {least} to {most}, got {number}")
    return number


def check_checkbox(value: object, label: str) -> bool:
    """A checkbox's value as a bool. None is a cleared box, as every control's None is its empty value (an
    emptied field, an empty text); anything else but a bool ("no", 0) only a client other than the page sends,
    and a truthy "no" must not tick it."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise LowdimError(f"{label} is a checkbox: send true or false, got {value!r}")
    return value


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
    """Each installed SD1.x model once, by its own name: an alias (sd1.5 for sd15) still works when typed; a
    plugin's model of another kind is left out, as every job on the page would refuse it."""
    from lowdim.registry import get_registry
    from lowdim_sd.plugin import SDBackend

    seen, names = set(), []
    for name, entry in get_registry().backends.items():
        if isinstance(entry.value, SDBackend) and id(entry.value) not in seen:
            seen.add(id(entry.value))
            names.append(name)
    return names


def check_model(model: object) -> str:
    """An installed backend, a folder or file here, or a hub id; anything else is refused by name. An empty
    value is refused first: ``Path("")`` is the current folder, which exists."""
    from lowdim.registry import get_registry

    if is_empty(model):  # the Model box emptied (it takes typed values), or null from a client
        raise LowdimError(MODEL_EMPTY)
    if not isinstance(model, str):  # a number or a list: only a client other than the page sends one
        raise LowdimError(f"model {model!r} is neither an installed model ({', '.join(installed_models())}) nor a "
                          f"folder or file on this machine")
    model = model.strip()
    if model in get_registry().backends:
        from lowdim_sd.registered_models import sd_backend

        sd_backend(model)  # a plugin's model of another kind: its one line, as the commands say it
        return model
    if expand_user(model).exists():
        refuse_what_a_load_refuses(expand_user(model))
        return model
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not model.startswith((".", "/")):
        return model  # a hub id: loading says whether it is reachable
    raise LowdimError(f"model '{model}' is neither an installed model ({', '.join(installed_models())}) nor a "
                      f"folder or file on this machine{model_meant(model)}")


def refuse_what_a_load_refuses(path: Path) -> None:
    """The load's own line for a path it refuses before diffusers reads it: a FIFO or device, a folder with no
    model_index.json, another pipeline than SD1.x (SDXL), a part it lists missing. Its JSON files only, so the
    page says it at start and at the crop preview, not at the first click that loads the model."""
    from lowdim.atomic import refuse_special
    from lowdim_sd.loading import not_a_pipeline_folder
    from lowdim_sd.pipeline_parts import check_model_folder

    refuse_special(path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():  # load_sd's words for it
            raise not_a_pipeline_folder(path)
        check_model_folder(path, weights=False)


def model_meant(model: str) -> str:
    """'; did you mean NAME?' for a bare word close to an installed model's name, with the cutoff the other
    commands' ``-m`` check uses (``lowdim_sd.loading.refuse_a_misspelt_name``)."""
    import difflib

    from lowdim.registry import get_registry

    if "/" in model or "\\" in model:
        return ""
    close = difflib.get_close_matches(model.lower(), list(get_registry().backends), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def clip_advice(message: str, asked: Sequence[str]) -> str:
    """Eval's advice for a CLIP model it cannot have, naming the CLIP metrics the Metrics box asked for (clip-t
    alone: take clip-t out), since a name not asked for is not in the box to take out."""
    named = [name for name in asked if name in CLIP_METRICS] or list(CLIP_METRICS)
    return message.replace(CLIP_ADVICE, f", or take {' and '.join(named)} out of the Metrics box")


def in_page_terms(message: str) -> str:
    """A library's advice said with the page's controls instead of the CLI's flags."""
    for cli, page in PAGE_TERMS:
        message = message.replace(cli, page)
    for pattern, page_words in PAGE_PATTERNS:
        message = pattern.sub(page_words, message)
    return message
