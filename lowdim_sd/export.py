"""Export any lowdim adapter as a plain LoRA in the two layouts Stable Diffusion tools read.

Every lowdim space has an exact LoRA form (``lora_factors``: down (r, in), up (out, r), with all
scaling folded into ``up``), so export is only renaming, reshaping and choosing alphas that make
each reader apply a scale of exactly 1:

* ``diffusers``: the peft layout ``StableDiffusionPipeline.load_lora_weights`` reads natively,
  ``unet.<module>.lora_A.weight`` (down) / ``.lora_B.weight`` (up), ``text_encoder.<module>...``.
  No alphas: diffusers (``get_peft_kwargs``) then sets ``lora_alpha = r``, i.e. scale 1.0, for one rank
  (``_uniform_rank``).
* ``kohya``: kohya-ss / A1111 / ComfyUI, ``lora_unet_<module, dots as underscores>.lora_down.weight``,
  ``.lora_up.weight`` and a scalar ``.alpha``; each layer at its own rank r with one alpha a for the file
  and ``up`` multiplied by r / a, so each reader's scale a / r gives the update exactly;
  ``lora_te_text_model_...`` for CLIP. Diffusers reads it via ``_convert_non_diffusers_lora_to_diffusers``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from lowdim.files import DTYPES, AdapterFile, atomic_save, read_adapter
from lowdim.option_words import either
from lowdim_sd.export_checks import (
    ExportError,
    check_export_options,
    check_export_source,
    check_export_target,
    check_replaceable,
    exists_error,
    written_through,
)
from lowdim_sd.export_job import ExportJob, ExportResult, checked_export  # noqa: F401 (API: the command's sequence)
from lowdim_sd.recorded_paths import shared_model_name
from lowdim_sd.taught_tokens import check_recorded_token

FORMATS = ("diffusers", "kohya")
# The kohya export as a Python caller asks for it (the CLI's words: --format kohya).
KOHYA_FROM_PYTHON = "export_adapter(fmt='kohya') (personalize: PersonalizeJob(export=['kohya']))"
DIFFUSERS_FROM_PYTHON = "export_adapter(fmt='diffusers') (personalize: PersonalizeJob(export=['diffusers']))"
COMPONENTS = ("unet", "text_encoder")
KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
Factors = Mapping[str, tuple[Tensor, Tensor]]

# The 1x1 convolutions of an SD 1.x UNet (use_linear_projection=False): the transformers' proj_in /
# proj_out and the resnets' conv_shortcut. Adapter files store names and shapes, not layer types, and
# LoRA readers need conv factors as 4-D (r, in, 1, 1) / (out, r, 1, 1) tensors.
_SD1_CONV1X1 = re.compile(r"unet\.(.+\.)?(attentions\.\d+\.proj_(in|out)|resnets\.\d+\.conv_shortcut)")
# The lookup tables lowdim can adapt besides linear and 1x1-conv layers: CLIP's token and position embeddings
# (the children of ``embeddings``) and whatever lowdim itself takes for a token embedding (TOKEN_EMBEDDINGS).
# Adapter files do not record a layer's kind, so the names tell; a LoRA reader would apply these as linear layers.
_EMBEDDINGS = re.compile(r"text_encoder\.(text_model\.)?embeddings\.[^.]+|.*[._](token_embedding|embed_tokens|wte)")


def sd1_conv1x1_layers(names: Iterable[str]) -> set[str]:
    """The names among ``names`` that are 1x1 convolutions in an SD 1.x UNet."""
    return {name for name in names if _SD1_CONV1X1.fullmatch(name)}


def refuse_embedding_layers(source: Path, names: Iterable[str]) -> None:
    """One line naming the first embedding layer among ``names``: SD LoRA files hold linear and 1x1-conv updates
    only, and no reader applies a pair of factors as a lookup table's rows (diffusers refuses the file or draws
    another picture, kohya readers drop the layer unsaid)."""
    for name in names:
        if _EMBEDDINGS.fullmatch(name):
            raise ExportError(f"{source}: layer {name} is an embedding (a lookup table of rows); SD LoRA files "
                              f"(diffusers, kohya) hold linear and 1x1-conv layers only; use lowdim merge to fold "
                              f"the adapter into the model, or train a Textual Inversion "
                              f"({either('--space ti', 'TrainJob(space=' + repr('ti') + ')')}) for the tokens")


def split_layer_name(name: str) -> tuple[str, str]:
    """``unet.a.b`` -> ("unet", "a.b"); text encoder paths are given the ``text_model.`` prefix.

    transformers >= 5 flattens CLIPTextModel (``encoder.layers.0...``) while SD checkpoints, kohya,
    A1111 and older transformers say ``text_model.encoder.layers.0...``; diffusers strips that prefix
    again when the loaded text encoder is flat, so the prefixed form is the one every reader accepts.
    """
    component, _, path = name.partition(".")
    if component not in COMPONENTS or not path:
        raise ExportError(
            f"layer '{name}' is not a Stable Diffusion layer: SD LoRA files only hold layers whose names start "
            f"with {' or '.join(c + '.' for c in COMPONENTS)}"
        )
    if component == "text_encoder" and not path.startswith(("text_model.", "text_projection")):
        path = "text_model." + path
    return component, path


def _checked(name: str, down: Tensor, up: Tensor, conv: bool) -> tuple[Tensor, Tensor]:
    if down.dim() != 2 or up.dim() != 2 or down.shape[0] != up.shape[1]:
        raise ExportError(
            f"layer '{name}': expected factors down (r, in) and up (out, r), got {tuple(down.shape)} and "
            f"{tuple(up.shape)} (per-sample adapters must be saved one sample at a time)"
        )
    down, up = down.detach().to("cpu", torch.float32), up.detach().to("cpu", torch.float32)
    if conv:
        down, up = down[:, :, None, None], up[:, :, None, None]
    return down.contiguous(), up.contiguous()


def _uniform_rank(factors: Factors) -> dict[str, tuple[Tensor, Tensor]]:
    """Zero-pad every layer to the largest rank: the same ΔW = up @ down, one rank for the whole file.

    For the diffusers layout only, which has no alphas: older diffusers releases (lowdim accepts 0.32 on) gave
    every layer the first layer's rank as alpha, so a layer of another rank got scale r_first / r; 0.42 reads
    each layer's rank as its alpha. lowdim's own spaces have one rank per adapter, so this changes
    nothing for them; a plugin space whose ``rank(layer)`` varies pays zero rows (kohya files do not).
    """
    rank = max((down.shape[0] for down, _ in factors.values()), default=0)
    padded = {}
    for name, (down, up) in factors.items():
        missing = rank - down.shape[0]
        if missing > 0 and down.dim() == 2 and up.dim() == 2:
            down = torch.cat([down, down.new_zeros(missing, down.shape[1])], dim=0)
            up = torch.cat([up, up.new_zeros(up.shape[0], missing)], dim=1)
        padded[name] = (down, up)
    return padded


_TEXT_LAYER = re.compile(r"(text_encoder\.(?:text_model\.)?encoder\.layers\.\d+\.)(.+)")


def _with_text_out_proj(factors: Factors) -> dict[str, tuple[Tensor, Tensor]]:
    """``factors`` plus a zero LoRA on an attention out_proj when the text-encoder part has none.

    diffusers (0.42) tells a text-encoder LoRA's key style by its out_proj keys: without one it refuses the
    file ("Could not automatically infer state dict type") or drops its q_proj layers without a word. A
    zero update changes no picture in any reader.
    """
    text = [(found, name) for name in factors if (found := _TEXT_LAYER.fullmatch(name))]
    if not text or any(found.group(2) == "self_attn.out_proj" for found, _ in text):
        return dict(factors)
    found, name = text[0]
    down, up = factors[name]
    width = up.shape[0] if found.group(2) == "mlp.fc2" else down.shape[1]  # fc1 widens; the rest keep the width
    return {**factors, found.group(1) + "self_attn.out_proj": (down.new_zeros(down.shape[0], width),
                                                                up.new_zeros(width, down.shape[0]))}


def to_diffusers(factors: Factors, conv_layers: Collection[str] = ()) -> dict[str, Tensor]:
    """The diffusers/peft LoRA state dict that ``load_lora_weights`` reads with scale 1.0."""
    tensors: dict[str, Tensor] = {}
    for name, (down, up) in _uniform_rank(factors).items():
        component, path = split_layer_name(name)
        down, up = _checked(name, down, up, name in conv_layers)
        tensors[f"{component}.{path}.lora_A.weight"] = down
        tensors[f"{component}.{path}.lora_B.weight"] = up
    return tensors


def kohya_name(name: str) -> str:
    """``unet.down_blocks.0.attn1.to_q`` -> ``lora_unet_down_blocks_0_attn1_to_q`` (kohya's module naming)."""
    component, path = split_layer_name(name)
    return KOHYA_PREFIX[component] + path.replace(".", "_")


def kohya_alpha(factors: Factors) -> int:
    """The one alpha of a kohya file: its smallest layer rank, so that ``up`` is only ever scaled up by rank /
    alpha (>= 1; never into fp16's subnormals), and a file of one rank keeps alpha = rank and ``up`` as it is.

    Kohya readers take each layer's alpha, but diffusers' converter maps per-layer alphas onto its own module
    names imperfectly (a layer of another alpha got the common one): with one alpha every reader scales
    layer by layer by alpha / rank, which ``to_kohya`` folds back out of ``up``."""
    return min((down.shape[0] for down, _ in factors.values()), default=1) or 1


def to_kohya(factors: Factors, conv_layers: Collection[str] = ()) -> dict[str, Tensor]:
    """The kohya-ss state dict (A1111, ComfyUI, diffusers' converter): each layer at its own rank, one alpha for
    the file (``kohya_alpha``), and ``up`` times rank / alpha, so each reader's alpha / rank scale gives 1."""
    alpha = kohya_alpha(factors)
    tensors: dict[str, Tensor] = {}
    for name, (down, up) in factors.items():
        key = kohya_name(name)
        if f"{key}.lora_down.weight" in tensors:
            # Dots and underscores both become '_': two names may collide, and one would silently vanish.
            raise ExportError(f"layer '{name}' maps to the kohya name '{key}' of another layer")
        down, up = _checked(name, down, up, name in conv_layers)
        tensors[f"{key}.lora_down.weight"] = down
        tensors[f"{key}.lora_up.weight"] = up * (down.shape[0] / alpha) if down.shape[0] != alpha else up
        # A 0-dim tensor, as kohya writes it; every reader scales the update by alpha / rank.
        tensors[f"{key}.alpha"] = torch.tensor(float(alpha))
    return tensors


CONVERTERS = {"diffusers": to_diffusers, "kohya": to_kohya}


def refuse_layers_diffusers_renames(source: Path, names: Iterable[str]) -> None:
    """One line naming the first layer that diffusers' kohya reader puts on another module or on none: it turns every
    ``_`` into ``.`` and restores only SD's own names, so a model's own ``my_layer`` loads as ``my.layer``, that is
    not at all, and diffusers says nothing. The diffusers layout keeps every name as it is.

    Where this diffusers' reader cannot be asked (another release), one warning naming the first layer beyond SD
    1.x's own, and the file is written: refusing would take a file from A1111 and ComfyUI users over a private
    function of diffusers, and a name it does restore (``proj_in``, ``my layer``) would be refused with it."""
    from lowdim_sd.kohya_diffusers_names import KohyaNamesNotChecked, ReaderNotAsked, renamed_layer

    layers = {kohya_name(name): name for name in names}
    fix = either("--format diffusers", DIFFUSERS_FROM_PYTHON)
    try:
        found = renamed_layer({key: ".".join(split_layer_name(name)) for key, name in layers.items()})
    except ReaderNotAsked as unasked:
        first, more = layers[unasked.unchecked[0]], len(unasked.unchecked) - 1
        which = (f"names of layer {first} and {more} more not of SD 1.x were" if more else
                 f"name of layer {first} was")
        lost = "these layers' updates" if more else "that layer's update"
        warnings.warn(f"{source}: the kohya {which} not checked against {unasked}; diffusers may load this file "
                      f"without {lost}; to load it in diffusers, export with {fix}, which keeps module names exactly",
                      KohyaNamesNotChecked, stacklevel=4)  # the line that called export_adapter
        return
    if found:
        key, _, read = found
        # Why, as each case comes about: a name of the model's own with an underscore, or a place diffusers' reader
        # knows no layer at (a top-level to_q, a text layer outside encoder.layers).
        into = (f"the module {read} (it turns every '_' into '.' and restores only SD's own names)" if read else
                "no module it loads (its kohya reader loads layers only where SD has them)")
        raise ExportError(f"{source}: layer {layers[key]}: diffusers reads its kohya key {key} into {into}, so "
                          f"diffusers would not apply this layer's update to it; export with {fix}, which keeps "
                          f"module names exactly")


def export_adapter(
    adapter_path: str | os.PathLike,
    out_path: str | os.PathLike,
    fmt: str = "diffusers",
    dtype: str = "fp16",
    conv_layers: Collection[str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Read a lowdim adapter file and write it atomically as a ``fmt`` LoRA .safetensors (a Textual
    Inversion file as an embedding: ``fmt`` diffusers or a1111, see ``lowdim_sd.textual_inversion``).

    ``conv_layers`` names the 1x1 convolution layers; by default those of an SD 1.x UNet. ``overwrite=False``:
    a file at ``out_path`` is never replaced, one that another run wrote while this export ran included (one
    line, and that file as it was). A symbolic link at ``out_path`` is kept: the file it leads to is the one
    written (``written_through``), and returned. The file is made to be shared, so it records no path of this
    machine: a local base model by its folder's name (``recorded_paths.shared_model_name``).
    """
    check_export_options(fmt, dtype)  # arguments first: a typo is not told after an output check
    source = check_export_source(Path(adapter_path))
    target = check_export_target(out_path)  # before the format's warnings
    check_replaceable(target, source)  # a link judged by the file it leads to
    if not overwrite and target.exists():
        raise exists_error(target)
    written = written_through(target)
    from lowdim_sd.textual_inversion import EXPORT_FORMATS, export_embedding, is_embedding, read_embedding

    # One reading decides the kind and is what a LoRA exports: a file another run renames over this one meanwhile
    # is never taken for the other kind. (An embedding is read again by export_embedding, which takes a path; a
    # LoRA renamed over it in between is refused in one line naming the file.)
    adapter = read_adapter(source)
    try:
        # Without overwrite, published only where the name is still free: another export to it may have
        # finished since the check above.
        if is_embedding(adapter):  # an embedding, not a LoRA: diffusers' or A1111's embedding file
            if fmt in EXPORT_FORMATS:  # else export_embedding names the formats
                from lowdim_sd.embedding_target import check_embedding_target

                check_embedding_target(read_embedding(adapter), fmt)  # what its base model would refuse
            return export_embedding(source, written, fmt, DTYPES[dtype], replace=overwrite)
        # An embedding's token is checked by its own reader, more strictly (a word its tokenizer takes); a LoRA's is
        # copied into the file to share as it is recorded
        return _export_lora(check_recorded_token(adapter), written, fmt, dtype, conv_layers, out_path,
                            replace=overwrite)
    except FileExistsError:
        raise exists_error(target) from None


def _export_lora(adapter: AdapterFile, target: Path, fmt: str, dtype: str, conv_layers: Collection[str] | None,
                 out_path: str | os.PathLike, replace: bool) -> Path:
    """``export_adapter`` for a LoRA adapter as read; ``out_path``: the name as given, which its warning says."""
    source = adapter.path
    factors = adapter.lora_factors()
    _refuse_lora_export(source, factors, fmt)
    if conv_layers is None:
        conv_layers = sd1_conv1x1_layers(factors)
    if fmt == "diffusers" and any(name.startswith("unet.") for name in factors):
        # Its peft keys load in diffusers; ComfyUI maps only kohya names onto the UNet and skips the rest.
        warnings.warn(f"{os.fspath(out_path)}: ComfyUI reads only the kohya format for the UNet part (the UNet keys of "
                      f"a diffusers-format LoRA are not loaded there); for ComfyUI or A1111 export with "
                      f"{either('--format kohya', KOHYA_FROM_PYTHON)}", stacklevel=3)
    tensors = _lora_tensors(source, factors, fmt, dtype, conv_layers)
    return atomic_save(tensors, _lora_metadata(adapter, factors, fmt, dtype), target, replace=replace)


def _refuse_lora_export(source: Path, factors: Factors, fmt: str) -> None:
    """Refuse a LoRA with no layers, a format of embeddings only, or layers of the token embedding."""
    if not factors:
        raise ExportError(f"{source}: the adapter covers no layers, there is nothing to export")
    if fmt not in CONVERTERS:  # a format of embeddings only (check_export_options took the rest)
        raise ExportError(f"{source}: a LoRA exports as {' or '.join(FORMATS)}, not '{fmt}' (a Textual Inversion "
                          f"embedding's format); for ComfyUI or A1111 export with "
                          f"{either('--format kohya', KOHYA_FROM_PYTHON)}")
    refuse_embedding_layers(source, factors)


def _lora_tensors(source: Path, factors: Factors, fmt: str, dtype: str,
                  conv_layers: Collection[str]) -> dict[str, Tensor]:
    """The file's tensors in ``fmt`` and ``dtype``, range-checked before anything is written."""
    written = _with_text_out_proj(factors)
    tensors = CONVERTERS[fmt](written, conv_layers)
    if fmt == "kohya":
        refuse_layers_diffusers_renames(source, written)
    tensors = {key: value.to(DTYPES[dtype]) for key, value in tensors.items()}
    _check_range(source, tensors, _layers_by_key(factors, fmt), dtype)
    return tensors


def _lora_metadata(adapter: AdapterFile, factors: Factors, fmt: str, dtype: str) -> dict[str, str]:
    """The exported file's metadata: where it came from, and what LoRA loaders and A1111 read."""
    rank = max(down.shape[0] for down, _ in factors.values())  # diffusers: every layer's (_uniform_rank)
    meta = adapter.metadata
    metadata = {
        # safetensors' own convention ("pt"), which some HF loaders check; the LoRA layout has its own key.
        "format": "pt",
        "lora_format": fmt,
        "source_adapter": adapter.path.name,
        "space": meta.get("space", adapter.space.name),
        "space_config": meta.get("space_config", ""),
        "base_model": shared_model_name(meta.get("base_model", "")),  # a file to share holds no path of this machine
        "token": meta.get("token", ""),
        "rank": str(rank),
        "dtype": dtype,
        "lowdim_version": meta.get("lowdim_version", ""),
    }
    if fmt == "kohya":
        # What A1111's extra-networks page and kohya's tools show for a LoRA.
        metadata.update({"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                         "ss_network_alpha": str(kohya_alpha(factors)), "ss_base_model_version": "sd_v1"})
    return metadata


def _layers_by_key(factors: Factors, fmt: str) -> dict[str, str]:
    """Each layer's name by the key its tensors have in the ``fmt`` file, less their ``.lora_*`` ends."""
    if fmt == "kohya":
        return {kohya_name(name): name for name in factors}
    return {".".join(split_layer_name(name)): name for name in factors}


def _check_range(source: Path, tensors: Mapping[str, Tensor], layers: Mapping[str, str], dtype: str) -> None:
    """One line naming the first layer whose values ``dtype`` stores as Inf (fp16's range ends at 65504): such
    a LoRA draws black images in every tool. One ``isfinite`` a tensor, on the few MB a LoRA holds."""
    for key, value in tensors.items():
        if bool(torch.isfinite(value).all()):
            continue
        layer = layers.get(key.split(".lora_")[0], key)
        fix = (either("export with --save-dtype fp32", "export_adapter(dtype='fp32')") if dtype == "fp16" else
               "its values are too large for any LoRA file (a diverged run?); retrain it")
        raise ExportError(f"{source}: layer {layer}: its values go beyond {dtype}'s range (Inf/NaN in the "
                          f"export); {fix}")
