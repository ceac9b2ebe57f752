"""CLIP text-encoder weights in the layout every transformers version reads.

transformers 5.6 stopped nesting CLIPTextModel's layers under ``text_model`` and saves them flat
(``encoder.layers.0...``). It still reads the nested names, which SD1.5's own files use, but earlier
releases take flat names for missing weights and fill those layers with random numbers, saying so only
in a log line. So lowdim writes the nested layout, and refuses a flat file that the installed
transformers would read as random.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lowdim import json_text
from lowdim.files import atomic_write, current_umask
from lowdim_sd.architecture import text_encoder_root
from lowdim_sd.loading import ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

NESTED = "text_model."


def save_pipeline(pipe: Any, folder: Path, **save_options: Any) -> None:
    """``pipe.save_pretrained`` in safetensors, its text encoder written once, in the nested layout."""
    from lowdim_sd.loading import quiet_libraries  # transformers' "Writing model shards" bar is not ours

    with _saving_nested(getattr(pipe, "text_encoder", None)), quiet_libraries():
        pipe.save_pretrained(folder, safe_serialization=True, **save_options)
    load_text_encoder_as_fp32(Path(folder))
    name_registered_sources(Path(folder))
    readable_per_umask(Path(folder))


# The keys diffusers (model_index.json, each part's config.json) and transformers (a tokenizer's) record the folder a
# pipeline or part was read from by.
SOURCE_KEYS = ("_name_or_path", "name_or_path")


def name_registered_sources(folder: Path) -> None:
    """Record a registered model's own folder, which diffusers writes as the ``_name_or_path`` of the pipeline and
    of each part it read from there, by the model's name (``tinyfaces``), as lowdim_merge.json does (docs/sd.md,
    "Paths in files", policy 2): the folder is where pip put the model (site-packages, a venv in the user's home),
    which a model handed on or uploaded would otherwise carry. A folder of the user's own keeps the path diffusers
    writes, as the user gave it: it is the user's file, recorded by path as lowdim_merge.json records it (policy 1),
    and the only note of where the weights came from that other tools read."""
    for path in sorted(folder.rglob("*.json")):
        config = _source_config(path)
        names = {key: name for key in SOURCE_KEYS if isinstance(config.get(key), str)
                 and (name := _registered_name(config[key])) is not None}
        if names:
            _write_json(path, {**config, **names})


def _write_json(path: Path, config: dict[str, Any]) -> None:
    text = json.dumps(config, indent=2) + "\n"  # the keys in the order diffusers wrote them
    atomic_write(path, lambda name: Path(name).write_text(text))


def _registered_name(source: str) -> str | None:
    """The registered model whose own folder ``source`` is, or a part of (``.../model/unet``), by its hub id where
    it loads from one (sd15's snapshot in the cache: what any tool reads) and else by its name; None for a name, a
    hub id or any other folder."""
    from lowdim_sd.model_names import registered_source
    from lowdim_sd.recorded_paths import is_recorded_name, registered_model_of

    if is_recorded_name(source):
        return None
    try:
        here = Path(source).resolve()
    except (OSError, ValueError):  # a NUL in the text: no folder
        return None
    name = registered_model_of(here) or registered_model_of(here.parent)
    hub_id = registered_source(name) if name is not None else None
    return hub_id if hub_id is not None and is_recorded_name(hub_id) else name


def _source_config(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` where it records a source folder (parsed only then: a tokenizer.json is
    megabytes); empty for any other file."""
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        text = path.read_text()
        value = json_text.loads(text) if "name_or_path" in text else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def readable_per_umask(folder: Path) -> None:
    """Give every file in ``folder`` the umask's permissions, as every other file lowdim writes has: safetensors
    writes its weight files through a temp file of mode 0600, which a shared model folder, or a server running as
    another user, could not read."""
    mode = 0o666 & ~current_umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def load_text_encoder_as_fp32(folder: Path) -> None:
    """Make the text encoder's config ask for fp32, as SD1.5's own does, whatever dtype its weights are stored in.

    ``from_pretrained`` without a dtype loads diffusers' parts in fp32 but, from transformers 5 on, a text
    encoder in the dtype its config names: a folder saved in fp16 would then mix fp16 and fp32 and fail on
    the first prompt. With a dtype passed, both libraries use that one and this setting is not read."""
    config_path = folder / "text_encoder" / "config.json"
    if not config_path.is_file():
        return
    config = json_text.loads(config_path.read_text())
    if config.get("dtype", "float32") == config.get("torch_dtype", "float32") == "float32":
        return
    config.update({key: "float32" for key in ("dtype", "torch_dtype") if key in config})
    atomic_write(config_path, lambda name: Path(name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))


@contextmanager
def _saving_nested(encoder: PreTrainedModel | None) -> Iterator[None]:
    """While inside, a flat CLIPTextModel's ``save_pretrained`` writes ``text_model.*`` names.

    diffusers saves each component through the component's own ``save_pretrained`` and passes it no
    state dict, so the nested names are handed in through a per-instance override of that method;
    renaming the flat file afterwards would write the whole text encoder a second time.
    """
    if encoder is None or type(encoder).__name__ != "CLIPTextModel" or text_encoder_root(encoder) is not encoder:
        yield  # nested already (transformers < 5.6) or not CLIP: saved as it is
        return
    nested_names = {NESTED + name: tensor for name, tensor in encoder.state_dict().items()}
    # In the instance's own __dict__, where it shadows the class's method for this object alone
    vars(encoder)["save_pretrained"] = functools.partial(type(encoder).save_pretrained, encoder,
                                                         state_dict=nested_names)
    try:
        yield
    finally:
        del vars(encoder)["save_pretrained"]


def check_readable_layout(part: Path, model_class: type, keys: list[str]) -> None:
    """Refuse flat CLIPTextModel weights (``keys``) where the installed transformers only reads nested ones."""
    if model_class.__name__ != "CLIPTextModel" or not _reads_nested_only(model_class):
        return
    if keys and not any(key.startswith(NESTED) for key in keys):
        import transformers

        raise ModelLoadError(
            f"{part}: its weights are named as transformers 5.6 and later save them (no 'text_model.' level), "
            f"which transformers {transformers.__version__} reads as missing and would replace with random "
            f"weights; upgrade transformers (pip install -U transformers)")


@cache
def _reads_nested_only(model_class: Any) -> bool:  # Any: transformers' CLIPTextModel, known by its name
    """Whether this transformers nests CLIPTextModel under ``text_model`` (before 5.6: it cannot read flat names)."""
    # Its special tokens inside its 8-token vocabulary: CLIP's own ids (49406...) would have transformers warn.
    config = model_class.config_class(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                      num_attention_heads=1, max_position_embeddings=4, projection_dim=8,
                                      bos_token_id=0, eos_token_id=1, pad_token_id=1)
    with torch.device("meta"):
        model = model_class(config)
    return text_encoder_root(model) is not model
