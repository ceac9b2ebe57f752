"""JSON nested past Python's parser in a file someone else made (a model folder's config, a feature file's keys, a
precompute shard's identities) is one line naming the file, never a RecursionError traceback (review BK2)."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file

from lowdim.errors import LowdimError
from lowdim_cli.main import main

DEEP = "[" * 200_000 + "]" * 200_000

pytestmark = pytest.mark.usefixtures("one_thread")


def test_generate_names_a_model_config_nested_too_deeply(tiny_sd, tmp_path, capsys):
    folder = tmp_path / "deep"
    shutil.copytree(tiny_sd, folder)
    config = folder / "unet" / "config.json"
    config.write_text(DEEP)
    code = main(["generate", "-m", str(folder), "-p", "a face", "-o", str(tmp_path / "out"), "--steps", "2"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "Traceback" not in err and "RecursionError" not in err
    assert f"{config}: not readable JSON (JSON nested too deeply)" in err


def test_a_feature_file_whose_keys_nest_too_deeply_is_named(tmp_path):
    from lowdim_sd.feature_file import FORMAT, check_covers

    path = tmp_path / "features.safetensors"
    save_file({"features": torch.zeros(1, 4)}, str(path), metadata={"format": FORMAT, "keys": DEEP})
    with pytest.raises(LowdimError, match=f"{path}: its list of image keys is missing or not JSON"):
        check_covers(path, {}, "precompute again")


def test_a_precompute_shard_whose_identities_nest_too_deeply_is_named(tmp_path):
    from lowdim_sd.precompute_resume import erase_rows

    save_file({"weights": torch.ones(2, 3)}, str(tmp_path / "shard-0.safetensors"), metadata={"identities": DEEP})
    with pytest.raises(LowdimError, match=r"shard-0.safetensors: the identities in its metadata are not readable "
                                          r"JSON \(JSON nested too deeply\)"):
        erase_rows(tmp_path, [{"shard": "shard-0.safetensors", "row": 0}])


def test_a_lock_record_nested_too_deeply_reads_as_torn(tmp_path):
    from lowdim_sd.run_lock import read_record

    (tmp_path / "lock").write_text(DEEP)
    assert read_record(tmp_path / "lock") is None
