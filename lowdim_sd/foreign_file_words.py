"""The SD backend's words for a file handed over where a lowdim adapter goes that is another tool's: where an SD
LoRA or embedding loads instead (diffusers, A1111, ComfyUI), and that a whole SD checkpoint is a model (``-m``). The
core tells what such a file is (``lowdim.foreign_files``); ``SDBackend`` answers through these."""

from __future__ import annotations

from collections.abc import Sequence

from lowdim.foreign_files import EMBEDDING, LORA, ForeignFile
from lowdim.option_words import either

# The tensor names of an LDM single-file checkpoint's UNet (lowdim_sd.model_paths.UNET_PREFIX, without its import).
CHECKPOINT_UNET = "model.diffusion_model."
WHOLE_CHECKPOINT = "a whole model checkpoint"


def checkpoint_kind(keys: Sequence[str]) -> str | None:
    """'a whole model checkpoint' for an SD single-file checkpoint's tensor names."""
    return WHOLE_CHECKPOINT if any(key.startswith(CHECKPOINT_UNET) for key in keys) else None


def advice(file: ForeignFile) -> str | None:
    """Where ``file`` is used instead: an SD embedding or LoRA in diffusers, A1111 or ComfyUI, a whole checkpoint
    as ``--model``; None for a LoRA of another model (the core names peft for it)."""
    if file.what == EMBEDDING:
        token = file.metadata.get("token")
        use = "pipe.load_textual_inversion" + (f"(path, token='{token}')" if file.style == "a1111" and token else "")
        return f"use it in diffusers ({use}), A1111 or ComfyUI"
    if file.what == LORA:
        return _lora_use(file) if _for_stable_diffusion(file.keys) else None
    return "pass it with --model (-m)" if file.what == WHOLE_CHECKPOINT else None


def _lora_use(file: ForeignFile) -> str:
    """Where an SD LoRA loads, as ``lowdim export``'s own warning and ``lowdim show`` say it: ComfyUI maps only kohya
    names onto the UNet, so a diffusers/peft file is for diffusers."""
    if file.style == "kohya":
        return "use it in diffusers (pipe.load_lora_weights), A1111 or ComfyUI"
    kohya = (f"for ComfyUI or A1111 export its adapter with "
             f"{either('--format kohya', 'export_adapter(fmt=' + repr('kohya') + ')')}" if file.exported_from else
             "ComfyUI and A1111 read the kohya format")
    return f"use it in diffusers (pipe.load_lora_weights); {kohya}"


def _for_stable_diffusion(keys: Sequence[str]) -> bool:
    """A LoRA of a UNet or of SD's text encoder (diffusers', kohya's or A1111's names), not of another model."""
    return any(key.startswith(("unet.", "text_encoder", "lora_unet_", "lora_te", "transformer.")) or
               ".unet." in key or "diffusion_model" in key for key in keys)
