"""A row drawn another way (ROW@S, ROW@te=0...) draws ROW's adapter file and reports ROW's seconds and bytes, however
the tasks are run: two worker processes at once, a batched run, or a task waiting for the process training that file
(review E: E2)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.bench.quality import QualityJob, run_quality


def job_for(tiny_sd, identities, out, **options):
    return QualityJob(identities=identities, model=str(tiny_sd), out=out, metrics=[], prompts=["a [V] face"],
                      sample_steps=2, **options)


def by_row(results: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["method"], r["identity"]): r for r in results}


def test_two_workers_train_a_rows_adapter_once_for_the_row_drawn_from_it(tiny_sd, identities, tmp_path):
    # Spawned workers run the real 40-step row (the quick_methods patch does not reach them); on this model, seconds.
    job = job_for(tiny_sd, identities, tmp_path / "bench", methods=["no-hyper", "no-hyper@te=0"], limit=1,
                  workers=2, threads=1)
    results = by_row(run_quality(job))
    kept = json.loads((job.out / "adapters" / "no-hyper" / "id-0.json").read_text())
    row, drawn = results[("no-hyper", "id-0")], results[("no-hyper@te=0", "id-0")]
    assert drawn["seconds"] == row["seconds"] == kept["seconds"]  # one training, its time in both rows
    assert drawn["bytes"] == row["bytes"] > 0


def test_a_batched_run_trains_the_rows_adapter_once_for_the_row_drawn_from_it(tiny_sd, identities, tmp_path,
                                                                              quick_methods):
    job = job_for(tiny_sd, identities, tmp_path / "bench", methods=["lidb-db", "lidb-db@0.5"], batch_subjects=2)
    results = by_row(run_quality(job))
    assert not (job.out / "adapters" / "lidb-db@0.5").exists()  # nothing trained under the drawn row's name
    for identity in ("id-0", "id-1"):
        row, drawn = results[("lidb-db", identity)], results[("lidb-db@0.5", identity)]
        assert drawn["seconds"] == row["seconds"] and drawn["bytes"] == row["bytes"]


@pytest.fixture
def trained_elsewhere(tiny_sd, identities, tmp_path, quick_methods):
    """``no-hyper``'s adapter for id-0, as another process of the same results folder would write it."""
    job = job_for(tiny_sd, identities, tmp_path / "elsewhere", methods=["no-hyper"], limit=1)
    run_quality(job)
    return job.out / "adapters" / "no-hyper"


@pytest.fixture
def counted(monkeypatch):
    """The rows this process trains, by name."""
    from lowdim_sd.bench import methods, quality

    trained = []

    def count(model, method, *args, **kwargs):
        trained.append(method.name)
        return methods.personalize_subject(model, method, *args, **kwargs)

    monkeypatch.setattr(quality, "personalize_subject", count)
    return trained


def hold(out, record: dict):
    """The claim on ``no-hyper``'s adapter for id-0, as the process in ``record`` holds it."""
    marker = out / "adapters" / "no-hyper" / "id-0.claim"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(record))
    return marker


def test_a_task_waits_for_the_adapter_another_process_is_training_and_draws_it(tiny_sd, identities, tmp_path,
                                                                               trained_elsewhere, counted, monkeypatch):
    from lowdim_sd.bench import shared_adapter

    monkeypatch.setattr(shared_adapter, "POLL_S", 0.05)
    job = job_for(tiny_sd, identities, tmp_path / "bench", methods=["no-hyper@te=0"], limit=1)
    marker = hold(job.out, {"host": socket.gethostname(), "pid": os.getpid()})  # alive: this process

    def finish_training():
        time.sleep(0.5)
        for name in ("id-0.safetensors", "id-0.json"):  # the file, then the record that marks it done
            shutil.copyfile(trained_elsewhere / name, marker.parent / name)
        marker.unlink()

    writer = threading.Thread(target=finish_training)
    writer.start()
    results = by_row(run_quality(job))
    writer.join()
    assert counted == []  # drawn, not trained again
    kept = json.loads((trained_elsewhere / "id-0.json").read_text())
    assert results[("no-hyper@te=0", "id-0")]["seconds"] == kept["seconds"]


def test_a_task_trains_the_adapter_itself_when_the_process_training_it_dies(tiny_sd, identities, tmp_path,
                                                                            quick_methods, counted, monkeypatch):
    from lowdim_sd.bench import shared_adapter

    monkeypatch.setattr(shared_adapter, "POLL_S", 0.05)
    job = job_for(tiny_sd, identities, tmp_path / "bench", methods=["no-hyper@te=0"], limit=1)
    holder = subprocess.Popen(["sleep", "60"])
    hold(job.out, {"host": socket.gethostname(), "pid": holder.pid})
    seen, looked = threading.Event(), shared_adapter.holder

    def look(path):  # the task has found the holder alive and waits on it: only now does the holder die
        found = looked(path)
        seen.set()
        return found

    def die_once_seen():  # however long the task takes to get there (a busy machine took over 0.5 s)
        seen.wait(120)
        holder.kill()
        holder.wait()  # reaped, so it is gone, not a zombie

    monkeypatch.setattr(shared_adapter, "holder", look)
    threading.Thread(target=die_once_seen).start()
    with pytest.warns(UserWarning, match=rf"no-hyper's adapter for id-0: the process training it \(pid {holder.pid} "
                                         r"on .*\) ended without writing it; training it here"):
        results = by_row(run_quality(job))
    assert counted == ["no-hyper@te=0"]
    kept = json.loads((job.out / "adapters" / "no-hyper" / "id-0.json").read_text())
    assert results[("no-hyper@te=0", "id-0")]["seconds"] == kept["seconds"]
    assert not (job.out / "adapters" / "no-hyper" / "id-0.claim").exists()


def test_a_task_gives_up_waiting_in_one_line_naming_the_claim(tiny_sd, identities, tmp_path, quick_methods, counted,
                                                               monkeypatch):
    from lowdim_sd.bench import shared_adapter

    monkeypatch.setattr(shared_adapter, "POLL_S", 0.05)
    monkeypatch.setattr(shared_adapter, "ADAPTER_WAIT_S", 0.3)
    job = job_for(tiny_sd, identities, tmp_path / "bench", methods=["no-hyper@te=0"], limit=1)
    marker = hold(job.out, {"host": "another-machine", "pid": 4242})  # another host's process: trusted alive
    with pytest.raises(LowdimError) as raised:
        run_quality(job)
    said = str(raised.value)
    assert "\n" not in said and counted == []
    assert "no-hyper@te=0 id-0: waited 0.3 s for no-hyper's adapter for id-0" in said
    assert "pid 4242 on another-machine" in said and f"delete {marker}" in said
    assert not (job.out / "results" / "no-hyper@te=0" / "id-0.claim").exists()  # the task is free for a rerun
