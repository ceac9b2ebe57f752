"""Which module diffusers puts each layer of a kohya LoRA file on, asked of the installed diffusers itself.

diffusers' kohya reader (``_convert_non_diffusers_lora_to_diffusers``) turns every ``_`` of a key into ``.`` and
then restores only the names it knows (SD's ``to_q``, ``proj_in``, ``time_emb_proj``, ...): a module of a user's
own model named ``my_layer`` comes back as ``my.layer``, and diffusers loads the file without an error and without
that layer's update. The reader's rules change between releases, so rather than copy them, this runs the key
through the same functions ``load_lora_weights`` calls, in its order, on the key names alone (no tensors).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

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


def modules_diffusers_reads(kohya_keys: Iterable[str]) -> dict[str, str | None]:
    """Each kohya layer key (``lora_unet_extra_my_layer``, less ``.lora_down.weight``) -> the module diffusers'
    ``load_lora_weights`` puts its update on (``unet.extra.my.layer``; text layers ``text_encoder.text_model...``),
    or None where diffusers would refuse the file out loud instead (a text part whose key style it cannot tell).

    A key diffusers would drop without a word (one that comes out in no form peft loads, or that lands on the
    module of another key) is missing from the answer. The answer is empty where this diffusers lacks the
    converter: it then reads no kohya file at all."""
    try:
        from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_lora_to_diffusers
    except ImportError:
        return {}
    # The converter moves values from key to key without looking at them (and pops them from the dict it is
    # given); each key's value is its own layer key, so what comes out says which layer went where.
    named = {}
    for key in kohya_keys:
        named[f"{key}.lora_down.weight"] = key
        named[f"{key}.lora_up.weight"] = key
    converted, _ = _convert_non_diffusers_lora_to_diffusers(named)
    parts: dict[str, dict[str, str]] = {"unet": {}, "text_encoder": {}}
    for key, layer_key in converted.items():
        component, _, rest = key.partition(".")
        parts.setdefault(component, {})[rest] = layer_key
    read: dict[str, str | None] = {}
    for component, keys in parts.items():
        try:
            peft = _as_peft(component, keys)
        except ValueError:
            # "Could not automatically infer state dict type": diffusers refuses the whole file out loud (export
            # adds an out_proj layer where it can), so none of these layers is lost without a word.
            read.update(dict.fromkeys(keys.values()))
            continue
        for peft_key, layer_key in peft.items():
            if peft_key.endswith(_DOWN_END):
                read[layer_key] = f"{component}.{peft_key.removesuffix(_DOWN_END)}"
    return read


def _as_peft(component: str, keys: dict[str, str]) -> dict[str, str]:
    """The converter's keys of one part as peft reads them: the UNet's through ``convert_unet_state_dict_to_peft``
    (``load_lora_adapter``), the text encoder's through ``convert_state_dict_to_diffusers`` then ``..._to_peft``
    (``_load_lora_into_text_encoder``)."""
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    if not keys:
        return {}
    if component == "unet":
        return convert_unet_state_dict_to_peft(keys)
    return convert_state_dict_to_peft(convert_state_dict_to_diffusers(keys))


def renamed_layer(layers: Mapping[str, str]) -> tuple[str, str, str | None] | None:
    """For ``layers`` (kohya layer key -> the module it should load onto, ``unet.extra.my_layer``): the first
    (key, module, what diffusers puts it on instead, None for nowhere) that diffusers' kohya reader gets wrong.

    A file of SD 1.x's own layers only (``SD1_OWN_MODULES``) is not asked about: importing diffusers' loaders
    costs seconds (torch._dynamo with it), more than the rest of an export."""
    if all(SD1_OWN_MODULES.fullmatch(module) for module in layers.values()):
        return None
    read = modules_diffusers_reads(layers)  # the whole file: diffusers tells a text part's key style from all of it
    if not read:
        return None
    for key, module in layers.items():
        if key in read and read[key] is None:
            continue  # refused out loud by diffusers, not lost
        if read.get(key) != module:
            return key, module, read.get(key)
    return None
