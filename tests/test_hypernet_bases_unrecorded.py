"""A hypernetwork file that names its adapter seed but not the checksum of the bases it makes is refused.

What users rely on: a LiDB hypernetwork predicts trainable params in the frozen bases its ``adapter_seed`` makes,
and every lowdim that records the seed for such a space records their checksum beside it (``save_hypernet``,
``lowdim train-hypernet``). A null or empty checksum beside the seed is an edit or damage:
loaded unchecked, every prediction would mean other weights without any error. A space without bases (LoRA)
records null, and files older than the checksum (the seed alone, or neither) keep loading as before.
"""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors.torch import save_file
from test_hypernet_bases_record import extra, hypernet_for

from lowdim.errors import LowdimError
from lowdim.hyper import load_hypernet, save_hypernet


def with_extra(path, **changes):
    """The file at ``path`` with its extra's keys replaced (``...``: the key removed), as a hand edit leaves it."""
    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
    record = json.loads(header["extra"])
    for key, value in changes.items():
        if value is ...:
            record.pop(key, None)
        else:
            record[key] = value
    header["extra"] = json.dumps(record)
    save_file(tensors, str(path), metadata=header)
    return path


def lidb_file(tmp_path):
    net, _ = hypernet_for("lidb", seed=7, a=8, b=8)
    return save_hypernet(tmp_path / "h.safetensors", net, {"model": "mine"}, adapter_seed=7)


@pytest.mark.parametrize("record", [None, ""], ids=["null", "empty"])
def test_a_lidb_file_whose_seed_has_no_checksum_is_refused_in_one_line(tmp_path, record):
    path = with_extra(lidb_file(tmp_path), adapter_seed=8, bases_checksum=record)
    with pytest.raises(LowdimError, match=r"h\.safetensors: .*adapter_seed 8 but no bases_checksum.*space 'lidb' "
                                          r"makes frozen bases") as refused:
        load_hypernet(path)
    assert "\n" not in str(refused.value) and "mismatch" not in str(refused.value)


@pytest.mark.parametrize("record", [12, "zz", "0123456789ABCDEF"])
def test_a_checksum_that_is_no_checksum_is_named_as_damage(tmp_path, record):
    path = with_extra(lidb_file(tmp_path), bases_checksum=record)
    with pytest.raises(LowdimError, match=r"h\.safetensors: its bases_checksum .* is not 16 lowercase hex digits"
                                          r".*damaged") as refused:
        load_hypernet(path)
    assert "mismatch" not in str(refused.value)


def test_older_files_and_spaces_without_bases_still_load(tmp_path):
    older = with_extra(lidb_file(tmp_path), bases_checksum=...)  # the seed alone: before checksums were recorded
    assert extra(older) == {"adapter_seed": 7}
    load_hypernet(older)
    net, _ = hypernet_for("lora", seed=0, rank=1)
    lora = save_hypernet(tmp_path / "l.safetensors", net, {"adapter_seed": 4, "bases_checksum": None})
    assert extra(lora) == {"adapter_seed": 4, "bases_checksum": None}  # what train-hypernet records for LoRA
    load_hypernet(lora)
    load_hypernet(with_extra(lora, adapter_seed=...))
