"""What the train-hypernet test files share: a tiny encoder and network, and a small job on them."""

from __future__ import annotations

import json

from lowdim_sd.hypertrain import HyperTrainJob

TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32}
HYPER = {"encoder_config": TINY_VIT, "width": 16, "attention_heads": 2, "iterations": 2}


def job(weights, out, **kwargs) -> HyperTrainJob:
    options = {"hyper": HYPER, "steps": 3, "batch_size": 2, "val_identities": 1, "val_every": 2, "log_every": 1,
               "checkpoint_every": 2, **kwargs}
    return HyperTrainJob(weights=weights, out=out, **options)


def records(path, split: str) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["split"] == split]
