"""A weight shard key with no "/" (review FAI2): ``WeightDataset.weights`` splits keys ``LAYER/PARAM`` with
``rpartition``, so such a key would read as a param of the layer '' (or a bare real layer name as its own param).
It never gets there: ``check_weight_folder`` compares every shard header with the ``LAYER/PARAM`` names the index's
space and layers make, and refuses any other key in one line naming the shard and the key, before any model
loads (train-hypernet writes nothing). These tests pin that."""

from __future__ import annotations

import json

import pytest
import torch
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it
from safetensors import safe_open
from safetensors.torch import save_file
from weight_shard_files import write_shard_for

from lowdim.errors import LowdimError
from lowdim_sd import loading
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.precompute import FORMAT
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")
SHARD = "shard-00000.safetensors"
LAYER = "unet.a"


def _folder_with_key(folder, key: str | None):
    """A one-identity weight folder whose shard holds, beside the tensors its index makes, one keyed ``key`` (none
    for None: the shard as precompute writes it)."""
    folder.mkdir()
    index = {"format": FORMAT, "model": "tinyfaces", "space": "lidb", "space_config": {}, "seed": 0,
             "layer_set": "unet", "layers": [[LAYER, 4, 4]], "resolution": 32, "root": str(folder), "config": {},
             "identities": [{"name": "id-0", "shard": SHARD, "row": 0, "seed": 0, "images": ["a.png"]}]}
    (folder / "index.json").write_text(json.dumps(index))
    write_shard_for(folder, index)
    if key is None:
        return folder
    with safe_open(str(folder / SHARD), framework="pt") as shard:
        metadata, tensors = shard.metadata(), {name: shard.get_tensor(name) for name in shard.keys()}  # noqa: SIM118
    save_file({**tensors, key: torch.zeros(1, 3)}, str(folder / SHARD), metadata=metadata)
    return folder


@pytest.mark.parametrize("key", [LAYER, "evil", "/A_train"])
def test_a_shard_key_with_no_layer_part_is_refused_by_name(tmp_path, key):
    folder = _folder_with_key(tmp_path / "w", key)
    with pytest.raises(LowdimError) as refused:
        WeightDataset(folder)
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"{folder / SHARD}: unexpected tensor {key!r}"), line


def test_train_hypernet_stops_on_it_before_any_model_loads(tmp_path, monkeypatch):
    folder = _folder_with_key(tmp_path / "w", LAYER)
    monkeypatch.setattr(loading, "load_sd", lambda *a, **k: pytest.fail("the SD model loaded"))
    with pytest.raises(LowdimError, match=f"unexpected tensor '{LAYER}'"):
        train_hypernet(job(folder, tmp_path / "h", alpha=0.0, checkpoint_every=1), progress=False)
    assert not (tmp_path / "h" / "checkpoints").exists()


def test_the_folder_without_it_reads_by_layer(tmp_path):
    folder = _folder_with_key(tmp_path / "w", None)
    assert set(WeightDataset(folder).weights(0)) == {LAYER}
