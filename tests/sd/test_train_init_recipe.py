"""An adapter `train --init` finetuned names the adapter it started from, as personalize's names its hypernetwork
(review EO 10 of session 58): `lowdim show` of it then says where it came from."""

from __future__ import annotations

import hashlib

from lowdim_sd.file_info import describe
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train


def test_a_finetuned_adapter_records_its_init_file_by_path_and_sha256(tiny_sd, lidb_and_ti, face, tmp_path,
                                                                      monkeypatch):
    start = lidb_and_ti[0]
    monkeypatch.chdir(start.parent)  # given relative, as a user types it: recorded whole, found from any folder
    job = TrainJob(model=str(tiny_sd), images=[face], initial=type(start)(start.name), out=tmp_path / "run",
                   config=TrainConfig(steps=1))
    run_train(job, progress=False)
    recipe = describe(tmp_path / "run" / "adapter.safetensors").as_dict()["fields"]["recipe"]
    assert recipe["init"] == {"file": str(start.resolve()), "sha256": hashlib.sha256(start.read_bytes()).hexdigest()}
    plain = TrainJob(model=str(tiny_sd), images=[face], out=tmp_path / "plain", config=TrainConfig(steps=1))
    run_train(plain, progress=False)
    assert "init" not in describe(tmp_path / "plain" / "adapter.safetensors").as_dict()["fields"]["recipe"]
