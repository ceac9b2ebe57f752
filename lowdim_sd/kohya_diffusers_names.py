"""Which module diffusers puts each layer of a kohya LoRA file on, asked of the installed diffusers itself.

diffusers' kohya reader (``_convert_non_diffusers_lora_to_diffusers``) turns every ``_`` of a key into ``.`` and
then restores only the names it knows (SD's ``to_q``, ``proj_in``, ``time_emb_proj``, ...): a module of a user's
own model named ``my_layer`` comes back as ``my.layer``, and diffusers loads the file without an error and without
that layer's update. The reader's rules change between releases, so rather than copy them, this runs the key
through the same functions ``load_lora_weights`` calls, in its order, on the key names alone (no tensors).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version

# The linear and 1x1-conv layers of an SD 1.x UNet and CLIP text encoder, as kohya files name their modules
# (text layers under text_model.): diffusers' reader gives each back as it was, whatever the block and layer
# numbers (tests/sd/test_kohya_names_diffusers_renames.py asks diffusers about names drawn from this pattern).
SD1_OWN_MODULES = re.compile(
    r"unet\.(?:time_embedding\.linear_[12]"
    r"|(?:(?:down|up)_blocks\.[0-9]+|mid_block)\.(?:resnets\.[0-9]+\.(?:time_emb_proj|conv_shortcut)"
    r"|attentions\.[0-9]+\.(?:proj_in|proj_out|transformer_blocks\.[0-9]+\."
    r"(?:attn[12]\.(?:to_q|to_k|to_v|to_out\.0)|ff\.net\.(?:0\.proj|2)))))"
    r"|text_encoder\.text_model\.encoder\.layers\.[0-9]+\.(?:self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12])")

# How a layer's down key ends once diffusers has turned it into peft's form: the rest is the module's name.
_DOWN_END = ".lora_A.weight"
# diffusers' kohya reader, private: another release may move, rename or reshape it (ReaderNotAsked).
_READER_MODULE = "diffusers.loaders.lora_conversion_utils"
_READER = "_convert_non_diffusers_lora_to_diffusers"
_MOST = 160  # characters of an error diffusers raised that a warning quotes
# How diffusers refuses a text-encoder part whose key style it cannot tell, the error load_lora_weights then shows its
# caller (state_dict_utils of 0.42.1): the one ValueError of its converters that is a refusal. Any other means they
# changed, and is said as a reader that could not be asked.
_REFUSAL = "Could not automatically infer state dict type"


class ReaderNotAsked(Exception):
    """The installed diffusers' kohya reader could not be asked where layers land: another release names, places or
    shapes its private functions otherwise. The message names that diffusers and what went wrong, in one line;
    ``unchecked``: the kohya layer keys whose names are then not known good (beyond ``SD1_OWN_MODULES``)."""

    def __init__(self, why: str, unchecked: Sequence[str] = ()) -> None:
        super().__init__(why)
        self.unchecked = tuple(unchecked)


class KohyaNamesNotChecked(UserWarning):
    """A kohya export written without asking diffusers' kohya reader about its layers (``ReaderNotAsked``). A
    caller who would rather have no file can make it an error: ``warnings.filterwarnings("error", category=...)``."""


def modules_diffusers_reads(kohya_keys: Iterable[str]) -> dict[str, str | None]:
    """Each kohya layer key (``lora_unet_extra_my_layer``, less ``.lora_down.weight``) -> the module diffusers'
    ``load_lora_weights`` puts its update on (``unet.extra.my.layer``; text layers ``text_encoder.text_model...``),
    or None where diffusers refuses the file instead (a text part whose key style it cannot tell).

    A key diffusers would drop without a word (one that comes out in no form peft loads, or that lands on the
    module of another key) is missing from the answer. ``ReaderNotAsked`` where this diffusers' reader cannot be
    imported, is called otherwise or answers in another shape: an answer from it would be a guess."""
    reader = _kohya_reader()
    # The converter moves values from key to key without looking at them (and pops them from the dict it is
    # given); each key's value is its own layer key, so what comes out says which layer went where.
    named = {}
    for key in kohya_keys:
        named[f"{key}.lora_down.weight"] = key
        named[f"{key}.lora_up.weight"] = key
    converted = _state_dict_of(_asked(_READER, reader, dict(named)), set(named.values()))
    parts: dict[str, dict[str, str]] = {"unet": {}, "text_encoder": {}}
    for key, layer_key in converted.items():
        component, _, rest = key.partition(".")
        parts.setdefault(component, {})[rest] = layer_key
    read: dict[str, str | None] = {}
    for component, keys in parts.items():
        peft = _as_peft(component, keys)
        if peft is None:  # the file refused: these layers land on no module (export adds an out_proj where it can)
            read.update(dict.fromkeys(keys.values()))
            continue
        for peft_key, layer_key in peft.items():
            if peft_key.endswith(_DOWN_END):
                read[layer_key] = f"{component}.{peft_key.removesuffix(_DOWN_END)}"
    return read


def _kohya_reader() -> Callable[..., object]:
    """The installed diffusers' ``_convert_non_diffusers_lora_to_diffusers``, or ``ReaderNotAsked``."""
    try:
        module = importlib.import_module(_READER_MODULE)
    except Exception as error:  # not installed, or an install whose own imports fail: whatever it raises
        raise _not_asked(f"{_READER_MODULE} cannot be imported ({_one_line(error)})") from None
    reader = getattr(module, _READER, None)
    if not callable(reader):
        raise _not_asked(f"it has no {_READER_MODULE}.{_READER}")
    return reader


def _asked(name: str, function: Callable[..., object], *args: object) -> object:
    """What one of diffusers' private functions answers; anything it raises means it changed (``ReaderNotAsked``)."""
    try:
        return function(*args)
    except Exception as error:  # another signature (TypeError) or its own rules tripping on our keys: not a bug here
        raise _not_asked(f"its {name} raised {_one_line(error)}") from None


def _state_dict_of(answer: object, layer_keys: set[str]) -> Mapping[str, str]:
    """The converted keys of the reader's ``(state dict, alphas)`` answer, each with the layer key it was given."""
    converted = answer[0] if isinstance(answer, tuple) and len(answer) == 2 else None
    if not isinstance(converted, Mapping) or not all(
            isinstance(key, str) and isinstance(value, str) and value in layer_keys
            for key, value in converted.items()):
        raise _not_asked(f"its {_READER} answered {_shape(answer)}, not the (state dict, alphas) pair lowdim reads")
    return converted


def _not_asked(why: str) -> ReaderNotAsked:
    try:
        installed = f"diffusers {version('diffusers')}"
    except PackageNotFoundError:
        installed = "diffusers (not installed here)"
    return ReaderNotAsked(f"{installed} ({why})")


def _one_line(error: BaseException) -> str:
    """``TypeError: <its message's first line>``, cut short: a warning is one line."""
    lines = str(error).strip().splitlines()
    said = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return said if len(said) <= _MOST else said[:_MOST - 3] + "..."


def _shape(answer: object) -> str:
    if isinstance(answer, tuple):
        return f"a tuple of {len(answer)} ({', '.join(type(part).__name__ for part in answer[:3])})"
    return f"a {type(answer).__name__}"


def _as_peft(component: str, keys: dict[str, str]) -> Mapping[str, str] | None:
    """The converter's keys of one part as peft reads them: the UNet's through ``convert_unet_state_dict_to_peft``
    (``load_lora_adapter``), the text encoder's through ``convert_state_dict_to_diffusers`` then ``..._to_peft``
    (``_load_lora_into_text_encoder``). None where diffusers refuses the text part (``_REFUSAL``); ``ReaderNotAsked``
    where these functions changed, another ValueError included: read as a refusal, it would pass for one."""
    if not keys:
        return {}
    try:
        from diffusers.utils import state_dict_utils
    except Exception as error:  # as for the reader: whatever a changed or broken install raises
        raise _not_asked(f"diffusers.utils.state_dict_utils cannot be imported ({_one_line(error)})") from None
    try:
        if component == "unet":
            peft = state_dict_utils.convert_unet_state_dict_to_peft(keys)
        else:
            peft = state_dict_utils.convert_state_dict_to_peft(state_dict_utils.convert_state_dict_to_diffusers(keys))
    except Exception as error:  # a missing function (AttributeError), another signature: not a bug here
        if component == "text_encoder" and isinstance(error, ValueError) and str(error).startswith(_REFUSAL):
            return None
        raise _not_asked(f"its state_dict_utils raised {_one_line(error)} on the {component} keys") from None
    if not isinstance(peft, Mapping):
        raise _not_asked(f"its state_dict_utils answered {_shape(peft)} for the {component} keys, not a state dict")
    return peft


def renamed_layer(layers: Mapping[str, str]) -> tuple[str, str, str | None] | None:
    """For ``layers`` (kohya layer key -> the module it should load onto, ``unet.extra.my_layer``): the first
    (key, module, what diffusers puts it on instead, None for nowhere) that diffusers' kohya reader gets wrong.

    Checked here, not left to diffusers failing at load (on a file of no layer it knows, 0.42 raised an IndexError;
    another release may load it without a word): the map from the file's keys to the modules diffusers loads them
    onto must be total (every key lands) and land each on its own module. ``layers`` is one-to-one (a module's key
    is its name with '_' for '.': ``to_kohya`` refuses two layers of one key), so that map is then injective too.

    A file of SD 1.x's own layers only (``SD1_OWN_MODULES``) is not asked about: importing diffusers' loaders
    costs seconds (torch._dynamo with it), more than the rest of an export, and diffusers reads those names back
    as they are. ``ReaderNotAsked``, naming the other layers, where this diffusers' reader cannot be asked."""
    unchecked = [key for key, module in layers.items() if not SD1_OWN_MODULES.fullmatch(module)]
    if not unchecked:
        return None
    try:
        read = modules_diffusers_reads(layers)  # the whole file: diffusers tells a text part's key style from all of it
    except ReaderNotAsked as unasked:
        raise ReaderNotAsked(str(unasked), unchecked) from None
    for key, module in layers.items():
        if read.get(key) != module:  # dropped (missing), the file refused (None), or on another module
            return key, module, read.get(key)
    return None
