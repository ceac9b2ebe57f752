"""``lowdim precompute`` under several processes: each trains its share, the main process merges the index
and says the run's total once; a peer that stops leaves one line, not a gloo traceback."""

from __future__ import annotations

import json

import accelerate
import accelerate.utils
import pytest
import torch
from fake_processes import FakeState  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.precompute import PrecomputeJob, merge_index, precompute, read_index
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


def job(tiny_sd, people, out) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out, config=TrainConfig(steps=2),
                         batch_subjects=2, crop=False)


def test_processes_split_identities_and_the_index_merges(tiny_sd, people, tmp_path, model, monkeypatch):
    out = tmp_path / "w"
    for rank in (1, 0):  # rank 0, the main process, finishes last and merges
        monkeypatch.setattr(accelerate, "PartialState", lambda rank=rank, **_: FakeState(rank))
        if rank == 1:
            result = precompute(job(tiny_sd, people, out), progress=False, model=model)
            assert result.trained == ["person1"] and (out / "shard-p1-00000.safetensors").is_file()
            assert [e["name"] for e in read_index(out)["identities"]] == ["person1"]  # merged on read
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert not list(out.glob("index-p*.json"))
    entries = json.loads((out / "index.json").read_text())["identities"]
    assert [(e["name"], e["shard"]) for e in entries] == [
        ("person0", "shard-p0-00000.safetensors"), ("person1", "shard-p1-00000.safetensors"),
        ("person2", "shard-p0-00000.safetensors")]
    assert merge_index(out) == out / "index.json" and len(WeightDataset(out)) == 3


class PeerGone(FakeState):
    def wait_for_everyone(self) -> None:  # what gloo raises once the other process has exited with an error
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer")


def test_a_process_whose_peer_stopped_says_what_it_kept_in_one_line(tiny_sd, people, tmp_path, model, monkeypatch):
    out = tmp_path / "w"
    monkeypatch.setattr(accelerate, "PartialState", lambda **_: PeerGone(0))
    with pytest.raises(LowdimError) as stopped:
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert str(stopped.value) == (f"another process of this run stopped before the end; this one trained 2 identities, "
                                  f"kept in {out / 'index-p0.json'}; run the same call again to continue: done "
                                  f"identities are skipped")
    assert [e["name"] for e in read_index(out)["identities"]] == ["person0", "person2"]  # readable as it is


def test_only_the_main_process_says_the_runs_total(tiny_sd, people, tmp_path, monkeypatch, capsys):
    argv = ["precompute", "-m", str(tiny_sd), "-i", str(people), "-o", str(tmp_path / "w"), "--steps", "1",
            "--no-crop", "--batch-subjects", "2", "--device", "cpu"]
    summed = []

    def with_a_peer(counts: torch.Tensor, reduction: str) -> torch.Tensor:  # its (trained, skipped) are (5, 1)
        summed.append(counts)
        return counts + torch.tensor([5, 1])

    monkeypatch.setattr(accelerate.utils, "reduce", with_a_peer)
    for rank in (1, 0):
        monkeypatch.setattr(accelerate, "PartialState", lambda rank=rank, **_: FakeState(rank))
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert f"process {rank + 1} of 2, batch 1 of 1: identit" in text  # identity 1, or identities 1-2
        if rank == 1:
            assert "trained" not in text
    assert [counts.tolist() for counts in summed] == [[1, 0], [2, 0]]
    assert "trained 7 identities by 2 processes, skipped 1 already done; index:" in text
