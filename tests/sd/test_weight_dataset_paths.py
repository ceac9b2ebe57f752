"""A precompute index is read from disk: its shard names must not lead lowdim outside the weight folder."""

from __future__ import annotations

import json

import pytest
from weight_shard_files import write_shard_for  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.precompute import FORMAT
from lowdim_sd.weight_dataset import WeightDataset


def write_index(folder, shard: object) -> None:
    folder.mkdir()
    index = {"format": FORMAT, "model": "tinyfaces", "space": "lidb", "space_config": {}, "seed": 0,
             "layer_set": "unet", "layers": [["unet.a", 4, 4]], "resolution": 32, "root": str(folder),
             "config": {}, "identities": [{"name": "id-0", "shard": shard, "row": 0, "seed": 0, "images": ["a.png"]}]}
    (folder / "index.json").write_text(json.dumps(index))
    if shard == "shard-00000.safetensors":
        write_shard_for(folder, index)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd.safetensors", "sub/shard.safetensors",
                                   "shard.bin", "..", 7])
def test_an_index_naming_a_shard_outside_its_folder_is_refused_by_name(tmp_path, shard):
    write_index(tmp_path / "w", shard)
    with pytest.raises(LowdimError, match=r"identity 'id-0' names shard .*plain \.safetensors file name"):
        WeightDataset(tmp_path / "w")


def test_a_plain_shard_name_is_accepted(tmp_path):
    write_index(tmp_path / "w", "shard-00000.safetensors")
    assert WeightDataset(tmp_path / "w").names == ["id-0"]


def test_a_shard_read_cut_by_a_stop_is_the_stop_and_a_damaged_shard_is_named(tmp_path, monkeypatch):
    """A signal's KeyboardInterrupt raised inside safetensors comes out as another error type: with a stop
    asked for, reading a shard raises the stop (so the run keeps its checkpoint), otherwise it names the shard."""
    import safetensors

    from lowdim_sd import stopping

    write_index(tmp_path / "w", "shard-00000.safetensors")
    dataset = WeightDataset(tmp_path / "w")

    def cut(*args, **kwargs):
        raise TypeError("could not determine the shape of object type 'torch.storage.UntypedStorage'")

    monkeypatch.setattr(safetensors, "safe_open", cut)
    stopping.ask()
    try:
        with pytest.raises(KeyboardInterrupt):
            dataset.weights(0)
    finally:
        stopping.withdraw()
    with pytest.raises(LowdimError, match=r"shard-00000.safetensors: unreadable weight shard \(could not determine"):
        dataset.weights(0)
