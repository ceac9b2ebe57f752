"""A precompute run into a weight folder that a live train-hypernet reads (review AQ1): it used to remove the
shards no index names and erase gone identities' rows at once, so the training died hours in on a shard that
had vanished ("unreadable weight shard") or went on with rows of zeros. A reader now marks the folder, and
precompute leaves the shards and rows alone while one lives (a later run sweeps them), saying so."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from safetensors.torch import load_file

import lowdim
from lowdim_sd.precompute import PrecomputeJob, precompute, read_index
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_dataset import WeightDataset
from lowdim_sd.weight_readers import READERS, live_readers

pytestmark = pytest.mark.usefixtures("one_thread")

# A reader in another process, as train-hypernet is: it reads the folder, says so, waits, then reads every row.
READER = """
import sys
from lowdim_sd.weight_dataset import WeightDataset
data = WeightDataset(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for number in range(len(data.names)):
    data.weights(number)
print("read every row", flush=True)
"""


def job(tiny_sd, people, out) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out, config=TrainConfig(steps=1),
                         batch_subjects=2, crop=False)


@pytest.fixture
def reader():
    started = []

    def start(folder):
        process = subprocess.Popen([sys.executable, "-c", READER, str(folder)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        started.append(process)
        assert process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def finish(process) -> str:
    out, _ = process.communicate("go\n", timeout=120)
    assert process.returncode == 0, out
    return out


def test_a_shard_a_live_reader_may_read_stays_until_a_later_run(tiny_sd, people, tmp_path, model, reader):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)  # shard 0: person0, person1; 1: person2
    alone = read_index(out)["identities"][2]["shard"]
    live = reader(out)
    assert [line.split(":")[0] for line in live_readers(out)] == [f"pid {live.pid} on {socket.gethostname()}"]
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1
    save_images(image, people / "person2", "img")  # another photo: person2 is trained again, its old shard unnamed
    with pytest.warns(UserWarning, match=rf"kept 1 shard no index names \({alone}\) while another run reads "
                                         rf"{out} \(pid {live.pid} on .*\); a later lowdim precompute into {out}, "
                                         rf"with no run reading it, removes it"):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert (out / alone).is_file()
    assert "read every row" in finish(live)  # the training went on with what it had read
    precompute(job(tiny_sd, people, out), progress=False, model=model)  # no reader now: the sweep
    assert not (out / alone).exists() and not (out / READERS).exists()


def test_a_gone_identitys_row_is_erased_only_once_no_live_reader_reads_it(tiny_sd, people, tmp_path, model,
                                                                          reader):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    entry = next(entry for entry in read_index(out)["identities"] if entry["name"] == "person1")
    kept = load_file(out / entry["shard"])
    live = reader(out)
    shutil.rmtree(people / "person1")
    with pytest.warns(UserWarning, match=rf"person1 has no pictures under {people} any more, but another run reads "
                                         rf"{out} \(pid {live.pid} on .*\): its weights stay there until a "
                                         rf"lowdim precompute into {out} runs with no run reading it"):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert "person1" in {entry["name"] for entry in read_index(out)["identities"]}
    assert all(torch.equal(tensor, kept[key]) for key, tensor in load_file(out / entry["shard"]).items())
    finish(live)
    with pytest.warns(UserWarning, match="person1 has no pictures"):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert all(not tensor[entry["row"]].any() for tensor in load_file(out / entry["shard"]).values())


def test_a_shard_removed_under_a_reader_is_named_as_removed_not_as_damaged(tiny_sd, people, tmp_path, model):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    data = WeightDataset(out)
    (out / data.entries[0]["shard"]).unlink()
    with pytest.raises(lowdim.LowdimError, match=rf"^{out / data.entries[0]['shard']}: removed since this run read "
                                                 rf"{out}'s index") as gone:
        data.weights(0)
    assert "unreadable" not in str(gone.value)


def test_a_reader_marks_the_folder_while_it_or_a_subset_lives_and_a_dead_ones_mark_is_swept(tiny_sd, people,
                                                                                           tmp_path, model):
    import json

    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    data = WeightDataset(out)
    subset = data.subset(data.names[:1])
    assert len(list((out / READERS).iterdir())) == 1
    assert live_readers(out) == []  # this process's own reading never holds up its own precompute
    del data
    assert len(list((out / READERS).iterdir())) == 1  # the subset still reads
    del subset
    assert not (out / READERS).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / READERS).mkdir()
    mark = out / READERS / "stale.json"
    mark.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "command": "x"}))
    assert live_readers(out) == [] and not mark.exists()


def test_a_mark_from_another_machine_counts_as_live_and_names_itself_to_delete(tmp_path):
    """No process on another host can be asked whether it lives: a killed job there leaves its mark, which the
    words must say how to clear, as a lock's refusal does."""
    import json

    out = tmp_path / "w"
    (out / READERS).mkdir(parents=True)
    mark = out / READERS / "4242-deadbeef.json"
    mark.write_text(json.dumps({"pid": 4242, "host": "another-" + socket.gethostname(), "command": "lowdim x"}))
    assert live_readers(out) == [f"pid 4242 on another-{socket.gethostname()}: lowdim x; if that run is gone, "
                                 f"delete {mark}"]
    assert mark.exists()


@pytest.mark.parametrize(("readers", "said"), [
    (["a"], "another run reads W (a)"),
    (["a", "b"], "2 other runs read W (a; b)"),
    (["a", "b", "c"], "3 other runs read W (a; b; ...)"),
])
def test_the_live_readers_are_counted_and_at_most_two_named(readers, said):
    from lowdim_sd.weight_readers import readers_words

    assert readers_words(Path("W"), readers) == said
