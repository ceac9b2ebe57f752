"""CLIP text-encoder weights in the layout every transformers version reads.

transformers 5.6 stopped nesting CLIPTextModel's layers under ``text_model`` and saves them flat
(``encoder.layers.0...``). It still reads the nested names, which SD1.5's own files use, but earlier
releases take flat names for missing weights and fill those layers with random numbers, saying so only
in a log line. So lowdim writes the nested layout, and refuses a flat file that the installed
transformers would read as random.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch
from safetensors import safe_open

from lowdim.files import atomic_save, atomic_write
from lowdim_sd.architecture import text_encoder_root
from lowdim_sd.loading import ModelLoadError

NESTED = "text_model."


def save_pipeline(pipe, folder: Path) -> None:
    """``pipe.save_pretrained`` in safetensors, its text encoder in the nested layout."""
    pipe.save_pretrained(folder, safe_serialization=True)
    write_nested(Path(folder) / "text_encoder")


def write_nested(part: Path) -> None:
    """Rename a saved CLIPTextModel's flat weight names to ``text_model.*`` in place (shard index included)."""
    config = part / "config.json"
    if not config.is_file() or json.loads(config.read_text()).get("architectures") != ["CLIPTextModel"]:
        return
    for file in sorted(part.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            metadata, keys = handle.metadata() or {}, list(handle.keys())
            if all(key.startswith(NESTED) for key in keys):
                continue
            tensors = {nested(key): handle.get_tensor(key) for key in keys}
        atomic_save(tensors, metadata, file)
    for index in part.glob("*.safetensors.index.json"):
        content = json.loads(index.read_text())
        content["weight_map"] = {nested(key): shard for key, shard in content["weight_map"].items()}
        atomic_write(index, lambda temp, content=content: Path(temp).write_text(json.dumps(content, indent=2)))


def nested(key: str) -> str:
    return key if key.startswith(NESTED) else NESTED + key


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
def _reads_nested_only(model_class: type) -> bool:
    """Whether this transformers nests CLIPTextModel under ``text_model`` (before 5.6: it cannot read flat names)."""
    config = model_class.config_class(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                      num_attention_heads=1, max_position_embeddings=4, projection_dim=8)
    with torch.device("meta"):
        model = model_class(config)
    return text_encoder_root(model) is not model
