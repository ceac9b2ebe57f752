"""Details of `lowdim bench quality` a reader of its table takes on trust: the file column's unit, which results
count as one hypernetwork's, which noise each prompt is drawn from, and that one identity is counted once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.bench.quality import QualityJob, generate_batch, settings
from lowdim_sd.bench.report import aggregate, human_bytes, markdown

METRICS = ["tinyfaces-identity", "tinyfaces-style"]


def record(identity: str, hypernet: str | None = None, digest: str | None = None, size: int = 54_000) -> dict:
    return {"method": "ours", "identity": identity, "reference": "", "seconds": 1.0, "bytes": size,
            "hypernet": hypernet, "hypernet_sha256": digest, "scores": {"m": [0.5]}, "columns": {"m": "M"}}


@pytest.mark.parametrize(("size", "shown"), [(0, "0"), (999, "999 B"), (1000, "1.0 KB"), (54_000, "54.0 KB"),
                                             (999_949, "999.9 KB"), (999_999, "1.0 MB"), (25_700_000, "25.7 MB"),
                                             (999_999_999, "1.0 GB"), (3_440_000_000, "3.4 GB")])
def test_the_file_column_prints_each_size_in_its_own_unit(size, shown):
    # README and architecture.md quote Ours' 54 KB file; a KB counted in millions would print "54000 B". A size
    # that rounds up to the next unit is shown in it: "1.0 MB", not "1000.0 KB".
    assert human_bytes(size) == shown


def test_the_table_prints_a_54_kb_file_in_kb():
    rows, columns = aggregate([record("id-0"), record("id-1")], ["ours"])
    assert "| 54.0 KB | 2 |" in markdown(rows, columns)


def test_results_recording_one_hypernetworks_path_with_and_without_its_digest_are_one_row():
    # An older run recorded only the path, a newer one its digest too: the path is all they share, so it decides.
    rows, _ = aggregate([record("id-0", "hyper.safetensors"), record("id-1", "hyper.safetensors", "ab12")], ["ours"])
    assert rows[0].identities == 2
    with pytest.raises(LowdimError, match="different hypernetworks"):  # two paths are two networks, digest or not
        aggregate([record("id-0", "old.safetensors"), record("id-1", "new.safetensors", "ab12")], ["ours"])


def test_one_path_retrained_between_runs_is_two_hypernetworks_where_every_result_has_its_digest():
    same = [record("id-0", "hyper.safetensors", "ab12"), record("id-1", "hyper.safetensors", "ab12")]
    assert aggregate(same, ["ours"])[0][0].identities == 2
    with pytest.raises(LowdimError, match="different hypernetworks"):
        aggregate([same[0], record("id-1", "hyper.safetensors", "cd34")], ["ours"])


def test_prompt_k_is_drawn_from_seed_plus_k(monkeypatch):
    import lowdim_sd.generate

    seeds = []

    class Pipe:
        def __call__(self, prompts, generator, **_):
            assert len(generator) == len(prompts)
            seeds.extend(g.initial_seed() for g in generator)
            return type("Output", (), {"images": list(prompts)})()

    model = type("Model", (), {"pipe": Pipe(), "resolution": 64})()
    monkeypatch.setattr(lowdim_sd.generate, "set_scheduler", lambda model, name: None)
    job = QualityJob(identities=None, seed=7, prompts=["a [V] face", "a [V] dog", "a [V] cat"], token="sks")
    assert generate_batch(model, job) == ["a sks face", "a sks dog", "a sks cat"]
    assert seeds == [7, 8, 9]


def result(identity: str) -> dict:
    return {"method": "base", "identity": identity, "reference": "", "seconds": 1.0, "bytes": 0, "hypernet": None,
            "hypernet_sha256": None, "scores": {name: [0.5] for name in METRICS}}


def results_folder(tmp_path: Path) -> Path:
    out = tmp_path / "bench"
    (out / "results" / "base").mkdir(parents=True)
    job = QualityJob(identities=None, out=out, metrics=list(METRICS), prompts=["a [V] face"], sample_steps=2)
    (out / "settings.json").write_text(json.dumps(settings(job)))
    for identity in ("id-0", "id-1"):
        (out / "results" / "base" / f"{identity}.json").write_text(json.dumps(result(identity)))
    return out


def test_a_result_copied_under_another_identitys_name_is_refused_not_counted_again(tmp_path, capsys):
    out = results_folder(tmp_path)
    assert main(["bench", "quality", "-o", str(out), "--no-run"]) == 0
    assert json.loads((out / "table.json").read_text())["rows"][0]["identities"] == 2
    copy = out / "results" / "base" / "id-5.json"
    shutil.copy(out / "results" / "base" / "id-0.json", copy)  # still says id-0
    (out / "table.json").unlink()
    assert main(["bench", "quality", "-o", str(out), "--no-run"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error:")]
    assert len(err) == 1 and err[0].startswith(f"Error: {copy}: damaged result (") and "id-5.json" in err[0], err
    assert not (out / "table.json").exists()
