"""Write a diffusers SD1.x pipeline as one original-layout ("LDM") ``.safetensors`` checkpoint.

That single file is what A1111 and ComfyUI load, and what ``StableDiffusionPipeline.from_single_file``
(hence ``lowdim --model file.safetensors``) reads back. Each diffusers key is renamed by its longest
module prefix found in a table built from the model's own config, so any SD1.x-shaped UNet/VAE
(block count, ``layers_per_block``) maps, and a key that no entry covers is an error rather than a
silently missing weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lowdim.errors import LowdimError
from lowdim.files import atomic_save
from lowdim.option_words import counted
from lowdim_sd.model_errors import ModelLoadError

UNET, VAE, CLIP = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."
METADATA = {"format": "pt", "lowdim": "ldm-sd1"}
BASE_MODEL_KEY = "lowdim_base_model"

# Sub-module renames inside one block; the rest of a key (".weight", ".bias") is kept.
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}

Table = dict[str, tuple[str, dict[str, str]]]  # diffusers module prefix -> (LDM prefix, sub-module renames)


def save_single_file(pipe: Any, path: str | Path, base_model: str | None = None,
                     extra: dict[str, str] | None = None, replace: bool = True) -> Path:
    """Write ``pipe``'s UNet, VAE and CLIP text encoder to ``path`` (atomically) as one SD1.x LDM checkpoint.

    Adapters must be merged first (``Adapters.merge``): the file holds plain weights only. ``base_model`` (a
    registered name, a hub id or a folder) is kept in the metadata, where loading the file finds its configs;
    ``extra`` is further metadata (what was merged in). ``replace=False``: FileExistsError where a file is at
    ``path`` when the write is done.
    """
    tensors = {key: value.detach().cpu() for key, value in ldm_state_dict(pipe).items()}
    metadata = {**METADATA, **({BASE_MODEL_KEY: base_model} if base_model else {}), **(extra or {})}
    return atomic_save(tensors, metadata, Path(path), replace=replace)


def stored_base_model(path: Path) -> str | None:
    """The base model a lowdim single file names (``save_single_file``), or None for any other file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
    except Exception:  # not readable here: the checkpoint loader says why in its own words
        return None
    return metadata.get(BASE_MODEL_KEY) if metadata.get("lowdim") == METADATA["lowdim"] else None


def ldm_state_dict(pipe: Any) -> dict[str, Tensor]:
    """The checkpoint's tensors under their LDM names; the tensors are the models' own (no copy, any device)."""
    return {
        **_convert(_plain_state_dict(pipe.unet), _unet_table(pipe.unet.config), UNET),
        **_convert(_vae_state_dict(pipe.vae), _vae_table(pipe.vae.config), VAE),
        **_clip_state_dict(pipe.text_encoder),
    }


def _plain_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The weights a plain model would have. A layer wrapped by lowdim keeps its weight (with any merged
    update folded in) under ``base_layer.`` and the adapter's own tensors under ``slots.``; an update still
    added in the forward is in no weight, so writing would silently drop it."""
    wrappers = {name: layer for name, layer in module.named_modules() if getattr(layer, "is_lowdim_wrapper", False)}
    live = [name for name, layer in wrappers.items() if any(s.live_factors() is not None for s in layer.slots.values())]
    if live:
        hold = "holds" if len(live) == 1 else "hold"
        raise LowdimError(f"{counted(len(live), 'layer')}, e.g. {live[0]}, {hold} an unmerged adapter: merge it first "
                          f"(Adapters.merge) or disable it, so the checkpoint holds what the model draws")
    state = {}
    for key, value in module.state_dict().items():
        owner = next((name for name in wrappers if key.startswith(f"{name}.")), None)
        if owner is None:
            state[key] = value
        elif key.startswith(f"{owner}.base_layer."):
            state[owner + key[len(owner) + len(".base_layer"):]] = value
        # else: the adapter's own tensors (``slots.``), no part of the model
    return state


def _convert(state: dict[str, Tensor], table: Table, prefix: str) -> dict[str, Tensor]:
    return {prefix + _rename(key, table): value for key, value in state.items()}


def _rename(key: str, table: Table) -> str:
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # longest prefix first: "x.resnets.0" before "x"
        entry = table.get(".".join(parts[:cut]))
        if entry is None:
            continue
        target, renames = entry
        rest = ".".join(parts[cut:])
        for old, new in renames.items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old):]
                break
        return f"{target}.{rest}"
    raise LowdimError(f"'{key}' has no place in an SD1.x checkpoint (is this an SD1.x pipeline?)")


def _unet_table(config: Any) -> Table:
    """The LDM UNet is flat lists of blocks: input_blocks.0 is conv_in, then per down block
    ``layers_per_block`` (resnet, attention) pairs and a downsampler; each up block has one more pair."""
    per_block = config.layers_per_block
    plain = config.class_embed_type is None and config.addition_embed_type is None
    if not isinstance(per_block, int) or not plain or config.mid_block_type != "UNetMidBlock2DCrossAttn":
        raise LowdimError("only SD1.x-style UNets map: one int layers_per_block, a cross-attention mid block, "
                         "no class or addition embedding")
    step = per_block + 1
    table: Table = {name: (ldm, {}) for name, ldm in (
        ("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
        ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2"),
        ("mid_block.attentions.0", "middle_block.1"))}
    table["mid_block.resnets.0"] = ("middle_block.0", UNET_RESNET)
    table["mid_block.resnets.1"] = ("middle_block.2", UNET_RESNET)
    for b in range(len(config.down_block_types)):
        for j in range(per_block):
            index = 1 + b * step + j
            table[f"down_blocks.{b}.resnets.{j}"] = (f"input_blocks.{index}.0", UNET_RESNET)
            table[f"down_blocks.{b}.attentions.{j}"] = (f"input_blocks.{index}.1", {})
        table[f"down_blocks.{b}.downsamplers.0.conv"] = (f"input_blocks.{1 + b * step + per_block}.0.op", {})
    for b, kind in enumerate(config.up_block_types):
        for j in range(step):
            table[f"up_blocks.{b}.resnets.{j}"] = (f"output_blocks.{b * step + j}.0", UNET_RESNET)
            table[f"up_blocks.{b}.attentions.{j}"] = (f"output_blocks.{b * step + j}.1", {})
        # The upsampler follows the last resnet (and its attention, if the block has one) in the same output block.
        slot = 2 if "CrossAttn" in kind else 1
        table[f"up_blocks.{b}.upsamplers.0.conv"] = (f"output_blocks.{b * step + per_block}.{slot}.conv", {})
    return table


def _vae_table(config: Any) -> Table:
    """LDM numbers the decoder's up blocks from the lowest resolution up, diffusers from the highest down."""
    blocks, per_block = len(config.down_block_types), config.layers_per_block
    table: Table = {name: (name, {}) for name in (
        "encoder.conv_in", "encoder.conv_out", "decoder.conv_in", "decoder.conv_out", "quant_conv", "post_quant_conv")}
    for side in ("encoder", "decoder"):
        table[f"{side}.conv_norm_out"] = (f"{side}.norm_out", {})
        table[f"{side}.mid_block.resnets.0"] = (f"{side}.mid.block_1", VAE_RESNET)
        table[f"{side}.mid_block.resnets.1"] = (f"{side}.mid.block_2", VAE_RESNET)
        table[f"{side}.mid_block.attentions.0"] = (f"{side}.mid.attn_1", VAE_ATTENTION)
    for i in range(blocks):
        up = blocks - 1 - i
        for j in range(per_block + 1):  # the decoder has one resnet more per block than the encoder
            if j < per_block:
                table[f"encoder.down_blocks.{i}.resnets.{j}"] = (f"encoder.down.{i}.block.{j}", VAE_RESNET)
            table[f"decoder.up_blocks.{i}.resnets.{j}"] = (f"decoder.up.{up}.block.{j}", VAE_RESNET)
        table[f"encoder.down_blocks.{i}.downsamplers.0"] = (f"encoder.down.{i}.downsample", {})
        table[f"decoder.up_blocks.{i}.upsamplers.0"] = (f"decoder.up.{up}.upsample", {})
    return table


def _vae_state_dict(vae: Any) -> dict[str, Tensor]:
    """LDM's VAE attention projections are 1x1 convolutions: store the linear weights as (C, C, 1, 1)."""
    state = _plain_state_dict(vae)
    for key, value in state.items():
        if ".mid_block.attentions." in key and key.endswith(".weight") and value.ndim == 2:
            state[key] = value[:, :, None, None]
    return state


def _clip_state_dict(text_encoder: Any) -> dict[str, Tensor]:
    """Keys as in the original checkpoints: ``...transformer.text_model.*``. transformers >= 5.6 dropped the
    ``text_model.`` level from CLIPTextModel's own keys; diffusers' reader and A1111/ComfyUI expect it."""
    out = {}
    for key, value in _plain_state_dict(text_encoder).items():
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        out[CLIP + name] = value
    return out


def incomplete_part(pipe: Any) -> tuple[str, list[str]] | None:
    """The first part of a pipeline read from one file that kept weights on 'meta' (the file held none for them),
    with those tensors' names; None when every weight was read."""
    for part, module in (("text encoder", pipe.text_encoder), ("VAE", pipe.vae), ("UNet", pipe.unet)):
        empty = [name for name, tensor in (*module.named_parameters(), *module.named_buffers()) if tensor.is_meta]
        if empty:
            return part, empty
    return None


def missing_from_file(path: Path, folder: Path) -> tuple[str, list[str]] | None:
    """The first part (text encoder, VAE) whose LDM tensors, as ``folder``'s configs describe them, ``path`` lacks.
    Asked only once diffusers failed on the file, so a checkpoint it reads is never refused by this comparison."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from safetensors import safe_open
    from transformers import CLIPTextConfig, CLIPTextModel

    try:
        with safe_open(str(path), framework="pt") as file:
            held = set(file.keys())
        with init_empty_weights():  # shapes only: nothing is allocated
            text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder), subfolder="text_encoder"))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder), subfolder="vae"))
    except Exception:  # unreadable file or configs: the loader's own line says why
        return None
    vae_state = _convert(_vae_state_dict(vae), _vae_table(vae.config), VAE)
    for part, state in (("text encoder", _clip_state_dict(text)), ("VAE", vae_state)):
        missing = sorted(set(state) - held)
        if missing:
            return part, missing
    return None


def incomplete_file_error(path: Path, part: str, missing: list[str]) -> LowdimError:
    """One line for a single file that lacks some of a part's weights: what is missing, never torch's meta text."""
    return ModelLoadError(f"{path} holds no weights for {len(missing)} tensors of the {part} (e.g. {missing[0]}): not "
                       f"a whole SD1.5 checkpoint; pass the complete file, or a diffusers folder")
