"""`lowdim bench quality`'s tables: valid JSON where a column has no scores, no standard error over one identity,
pictures a metric asked nothing of explained, and a gallery of the rows that have results."""

from __future__ import annotations

import json
import warnings

import pytest
from PIL import Image

from lowdim.metrics import PROMPT, SUBJECT
from lowdim_sd.bench.quality import QualityJob
from lowdim_sd.bench.report import aggregate, markdown, not_asked_notes, write_reports

AXES = {"i": SUBJECT, "m": PROMPT}.get


def record(method, identity, scores, not_asked=None, reference=""):
    return {"method": method, "identity": identity, "reference": reference, "seconds": 1.0, "bytes": 10,
            "hypernet": None, "scores": scores, "columns": {"i": "Ident", "m": "Style acc"}, "skipped": {}} | (
        {"not_asked": not_asked} if not_asked else {})


def strict_json(path):
    """The file as JSON proper: NaN and Infinity, which Python's json writes by default, are no JSON."""
    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def job_at(tmp_path, methods=("base",)):
    return QualityJob(identities=None, out=tmp_path / "bench", methods=list(methods), prompts=["a [V] face"] * 2)


def test_a_column_without_scores_is_null_in_table_json_and_a_row_without_results_too(tmp_path):
    job = job_at(tmp_path, ["base", "ti"])
    results = [record("base", f"id-{k}", {"i": [0.1 * k, 0.2], "m": [None, None]}, {"m": 2}) for k in range(2)]
    rows, columns = aggregate(results, job.methods)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_reports(job, results, rows, columns, 2, [], axis_of=AXES)
    table = strict_json(job.out / "table.json")
    base, ti = table["rows"]
    assert base["metrics"]["m"] == {"mean": None, "se": None, "n": 0}
    assert ti["identities"] == 0 and ti["seconds"] == {"mean": None, "se": None, "n": 0}


def test_one_identity_has_a_mean_and_no_standard_error():
    rows, columns = aggregate([record("base", "id-0", {"i": [0.25, 0.75], "m": [1.0, 1.0]})], ["base"])
    text = markdown(rows, columns)
    assert "| Base model | 0.500 (n=1) | 1.000 (n=1) | 1.00 (n=1) |" in text and "±" not in text.split("\n", 2)[2]


def test_a_rows_seconds_and_file_size_are_the_mean_over_its_identities():
    results = [record("base", "id-0", {"i": [0.1], "m": [1.0]}) | {"seconds": 1.0, "bytes": 100},
               record("base", "id-1", {"i": [0.1], "m": [1.0]}) | {"seconds": 3.0, "bytes": 300}]
    rows, columns = aggregate(results, ["base"])
    seconds = rows[0].seconds
    assert (seconds.mean, seconds.se, seconds.n) == (2.0, pytest.approx(1.0), 2)  # stdev √2 over √2 identities
    assert rows[0].bytes == 200
    assert "| 2.00 ± 1.00 | 200 B | 2 |" in markdown(rows, columns)


def test_table_json_gives_no_standard_error_over_one_identity(tmp_path):
    job = job_at(tmp_path)
    results = [record("base", "id-0", {"i": [0.25, 0.75], "m": [1.0, 1.0]})]
    rows, columns = aggregate(results, job.methods)
    write_reports(job, results, rows, columns, 2, [])
    row = strict_json(job.out / "table.json")["rows"][0]
    assert row["metrics"]["i"] == {"mean": 0.5, "se": None, "n": 1} and row["seconds"]["se"] is None


def test_pictures_a_metric_asked_nothing_of_are_counted_and_explained(tmp_path):
    job = job_at(tmp_path, ["base", "ti"])
    results = [record("base", "id-0", {"i": [0.1, 0.2], "m": [None, 1.0]}, {"m": 1}),
               record("ti", "id-0", {"i": [0.3, 0.2], "m": [None, None]}, {"m": 2}),
               record("ti", "id-1", {"i": [0.3, 0.2], "m": [None, None]}, {"m": 2})]
    rows, columns = aggregate(results, job.methods)
    assert [row.not_asked for row in rows] == [{"m": 1}, {"m": 4}] and [row.misses for row in rows] == [0, 0]
    notes = not_asked_notes(rows, columns)
    assert notes == ["Style acc asked nothing of 5 of 6 pictures: their prompts give it no question (as a prompt "
                     "naming no style gives a style metric none); they are not misses"]
    assert markdown(rows, columns).endswith("\n" + notes[0] + "\n")
    write_reports(job, results, rows, columns, 2, [], axis_of=AXES)
    table = strict_json(job.out / "table.json")
    assert [row.get("not_asked") for row in table["rows"]] == [{"m": 1}, {"m": 4}]


def test_a_table_whose_metrics_asked_everything_has_no_note():
    rows, columns = aggregate([record("base", "id-0", {"i": [0.1], "m": [None]})], ["base"])
    assert not_asked_notes(rows, columns) == [] and rows[0].misses == 1
    assert markdown(rows, columns).rstrip().endswith("|")


def test_no_frontier_because_its_prompt_metric_asked_nothing_says_so(tmp_path):
    job = job_at(tmp_path)
    (job.out).mkdir(parents=True)
    (job.out / "frontier.png").write_bytes(b"an earlier run's")
    results = [record("base", "id-0", {"i": [0.1, 0.2], "m": [None, None]}, {"m": 2})]
    rows, columns = aggregate(results, job.methods)
    with pytest.warns(UserWarning) as caught:
        paths = write_reports(job, results, rows, columns, 2, [], axis_of=AXES)
    assert [p.name for p in paths] == ["table.md", "table.json"]
    message = " ".join(str(w.message) for w in caught)
    assert "no frontier.png: Style acc asked nothing of any picture" in message
    assert "frontier.png is from an earlier run" in message and "\n" not in message


def test_the_default_gallery_shows_the_rows_that_have_results(tmp_path, monkeypatch):
    from lowdim_sd.bench import report

    job = job_at(tmp_path, ["base", "ours", "ti"])
    reference = tmp_path / "id-0.png"
    Image.new("RGB", (8, 8)).save(reference)
    for method in ("base", "ti"):
        folder = job.out / "images" / method / "id-0"
        folder.mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (8, 8), (40 * k, 0, 0)).save(folder / f"{k:02d}.png")
    results = [record(m, "id-0", {"i": [0.1, 0.2], "m": [1.0, 1.0]}, reference=str(reference))
               for m in ("base", "ti")]
    rows, columns = aggregate(results, job.methods)
    drawn = []
    real = report.gallery
    monkeypatch.setattr(report, "gallery", lambda out, results, methods, *rest: drawn.append(methods) or real(
        out, results, methods, *rest))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no gallery" warning about the row without results
        paths = write_reports(job, results, rows, columns, 2, [0, 1])
    assert paths[-1].name == "gallery.png" and drawn == [["base", "ti"]]
    with pytest.warns(UserWarning, match=r"no gallery: .*\(ours\)"):  # asked for by name: still refused
        write_reports(job, results, rows, columns, 2, [0, 1], ["ours"])


@pytest.mark.parametrize("damage", ["{", "[]", '{"batch": 1}', '{"seconds": "soon"}'])
def test_a_damaged_adapter_record_means_the_adapter_is_trained_again(tmp_path, damage):
    from lowdim_sd.bench.batched import adapter_path, pretrained

    path = adapter_path(tmp_path, "ours", "id-00001")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"adapter")
    path.with_suffix(".json").write_text('{"seconds": 2.5, "looks": "fair skin"}')
    kept = pretrained(tmp_path, "ours", "id-00001")
    assert (kept.seconds, kept.looks, kept.bytes) == (2.5, "fair skin", 7)
    path.with_suffix(".json").write_text(damage)
    assert pretrained(tmp_path, "ours", "id-00001") is None



def test_tabulating_with_no_gallery_needs_no_prompts_and_writes_whole(tmp_path):
    """A tabulation asked for no gallery prompts reads no prompt list, so a job without one still gets its
    tables; the gallery's settings are read before any file, so a missing prompt list writes nothing."""
    job = QualityJob(identities=None, out=tmp_path / "bench", methods=["base"])
    results = [record("base", "id-0", {"i": [0.25, 0.75], "m": [1.0, 1.0]})]
    rows, columns = aggregate(results, job.methods)
    paths = write_reports(job, results, rows, columns, 2, [], axis_of=AXES)
    assert {p.name for p in paths} >= {"table.md", "table.json"}
    asked = QualityJob(identities=None, out=tmp_path / "asked", methods=["base"])
    with pytest.raises(RuntimeError, match="check_job"):
        write_reports(asked, results, rows, columns, 2, [0], axis_of=AXES)
    assert not (asked.out / "table.md").exists()


def test_the_n_column_counts_the_rows_identities_and_each_cells_n_those_it_scored(tmp_path):
    # id-1's picture was missed by every metric: each cell averages one identity, the row still ran two (review DD b15)
    job = job_at(tmp_path)
    results = [record("base", "id-0", {"i": [0.5], "m": [1.0]}), record("base", "id-1", {"i": [None], "m": [None]})]
    rows, columns = aggregate(results, job.methods)
    assert "| Base model | 0.500 (n=1) | 1.000 (n=1) | 1.00 ± 0.00 | 10 B | 2 |" in markdown(rows, columns)
    write_reports(job, results, rows, columns, 2, [], axis_of=AXES)
    row = strict_json(job.out / "table.json")["rows"][0]
    assert row["identities"] == 2 and row["metrics"]["i"]["n"] == row["metrics"]["m"]["n"] == 1


def test_a_column_only_a_later_result_brings_is_in_the_table():
    # a metric unavailable (skipped) where the first identity ran: its heading and cells are kept (review DD b17)
    first = record("base", "id-0", {"i": [0.5]}) | {"columns": {"i": "Ident"}}
    later = record("base", "id-1", {"i": [0.5], "m": [1.0]})
    rows, columns = aggregate([first, later], ["base"])
    assert columns == {"i": "Ident", "m": "Style acc"}
    assert markdown(rows, columns).startswith("| Method | Ident | Style acc | s / subject | file (fp32) | n |\n")
