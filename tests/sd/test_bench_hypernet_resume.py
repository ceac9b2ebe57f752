"""`lowdim bench quality` resumed with another hypernetwork, or with the same path retrained: the done rows of the
old network are refused before any task runs, not reused and tabulated as the new one's."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.bench.quality import QualityJob, run_quality
from lowdim_sd.bench.report import aggregate


def job(tiny_sd, identities, out, hypernet):
    return QualityJob(identities=identities, model=str(tiny_sd), out=out, metrics=[], prompts=["a [V] face"],
                      sample_steps=2, methods=["only-hyper", "base"], limit=1, hypernet=hypernet)


def test_another_hypernetwork_or_the_same_path_retrained_is_refused_before_any_task(
        tiny_sd, identities, tmp_path, quick_methods, make_hypernet, monkeypatch):
    first = shutil.copyfile(make_hypernet(1, run="first"), tmp_path / "first.safetensors")
    second = shutil.copyfile(make_hypernet(1, run="second"), tmp_path / "second.safetensors")
    out = tmp_path / "bench"
    done = run_quality(job(tiny_sd, identities, out, first))
    assert {r["method"] for r in done} == {"only-hyper", "base"}
    again = run_quality(job(tiny_sd, identities, out, first))  # the same network: nothing to do, nothing refused
    assert sorted(map(str, again)) == sorted(map(str, done))

    def no_work(*args, **kwargs):
        raise AssertionError("a task ran before the other hypernetwork was refused")

    monkeypatch.setattr("lowdim_sd.bench.quality.run_todo", no_work)
    for given in (second, first):
        if given == first:
            shutil.copyfile(second, first)  # the same path, retrained
        with pytest.raises(LowdimError, match=r"results/only-hyper holds results made with another hypernetwork"):
            run_quality(job(tiny_sd, identities, out, given))


def test_a_no_hyper_row_records_no_hypernetwork_so_a_resume_with_another_keeps_it(
        tiny_sd, identities, tmp_path, quick_methods, make_hypernet, monkeypatch):
    first = shutil.copyfile(make_hypernet(1, run="first"), tmp_path / "first.safetensors")
    second = shutil.copyfile(make_hypernet(1, run="second"), tmp_path / "second.safetensors")
    out = tmp_path / "bench"

    def rows(hypernet):
        return dataclasses.replace(job(tiny_sd, identities, out, hypernet), methods=["no-hyper", "base"])

    done = run_quality(rows(first))
    assert {r["method"]: (r["hypernet"], r["hypernet_sha256"]) for r in done} == {
        "no-hyper": (None, None), "base": (None, None)}  # no-hyper trains from zero: no network of its own
    monkeypatch.setattr("lowdim_sd.bench.quality.run_task", lambda job, task: pytest.fail("reran a done task"))
    again = run_quality(rows(second))  # accepted: neither row used a hypernetwork
    assert sorted(map(str, again)) == sorted(map(str, done))


def test_a_row_whose_results_record_two_network_contents_at_one_path_is_refused():
    def record(identity, digest):
        return {"method": "ours", "identity": identity, "seconds": 1.0, "bytes": 1, "hypernet": "h.safetensors",
                "hypernet_sha256": digest, "scores": {"m": [1.0]}, "columns": {"m": "M"}, "skipped": {}}

    aggregate([record("a", "aaaa"), record("b", "aaaa")], ["ours"])  # one network: fine
    with pytest.raises(LowdimError, match="different hypernetworks"):
        aggregate([record("a", "aaaa"), record("b", "bbbb")], ["ours"])
