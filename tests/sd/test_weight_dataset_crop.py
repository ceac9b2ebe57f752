"""The hypernetwork sees each image cropped as precompute cropped it: an index's recorded margin, and for an index
written before the margin was recorded, the margin precompute used then (its default)."""

from __future__ import annotations

import json

import pytest
import torch
from weight_shard_files import write_shard_for  # tests/sd, on the path as pytest puts it

from lowdim_sd import weight_dataset
from lowdim_sd.faces import DEFAULT_MARGIN
from lowdim_sd.precompute import FORMAT
from lowdim_sd.weight_dataset import WeightDataset


def write_cropped_index(folder, crop_config: dict) -> None:
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")  # never decoded: the crop is stood in for below
    index = {"format": FORMAT, "model": "tinyfaces", "space": "lidb", "space_config": {}, "seed": 0,
             "layer_set": "unet", "layers": [["unet.a", 4, 4]], "resolution": 32, "root": str(folder),
             "config": crop_config, "identities": [{"name": "id-0", "shard": "shard-00000.safetensors", "row": 0,
                                                    "seed": 0, "images": ["a.png"]}]}
    (folder / "index.json").write_text(json.dumps(index))
    write_shard_for(folder, index)


@pytest.mark.parametrize(("crop_config", "margin"), [
    ({"crop": True}, DEFAULT_MARGIN),  # an index from before crop_margin was recorded
    ({"crop": True, "crop_margin": None}, DEFAULT_MARGIN),
    ({"crop": True, "crop_margin": 0.0}, 0.0),
    ({"crop": True, "crop_margin": 0.25, "face_index": 1}, 0.25),
])
def test_images_are_cropped_with_the_margin_precompute_used(tmp_path, monkeypatch, crop_config, margin):
    write_cropped_index(tmp_path / "w", crop_config)
    asked = []

    def crop(path, size, crop, crop_margin=DEFAULT_MARGIN, face_index=None):
        asked.append((crop, crop_margin, face_index))
        return torch.zeros(3, size, size)

    monkeypatch.setattr(weight_dataset, "load_face_image", crop)
    WeightDataset(tmp_path / "w").image(0)
    assert asked == [(True, margin, crop_config.get("face_index"))]
