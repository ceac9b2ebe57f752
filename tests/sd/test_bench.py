"""`lowdim bench quality`: statistics, resumable tasks shared by processes, batched rows, the command."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import statistics

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.bench.claims import claim, release
from lowdim_sd.bench.quality import QualityJob, result_path, run_quality
from lowdim_sd.bench.report import aggregate, markdown, mean_se, per_identity_mean, write_reports

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=40))
def test_mean_and_standard_error_match_the_textbook(values):
    cell = mean_se(values)
    assert cell.n == len(values)
    assert cell.mean == pytest.approx(math.fsum(values) / len(values), rel=1e-9, abs=1e-9)
    expected = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    assert cell.se == pytest.approx(expected, rel=1e-6, abs=1e-9)


@given(st.lists(st.one_of(st.none(), finite), max_size=20))
def test_per_identity_mean_leaves_misses_out(scores):
    kept = [s for s in scores if s is not None]
    value = per_identity_mean(scores)
    assert (value is None) == (not kept)
    if kept:
        assert value == pytest.approx(sum(kept) / len(kept))


def record(method, identity, scores, seconds=1.0, hypernet=None):
    return {"method": method, "identity": identity, "reference": "", "seconds": seconds, "bytes": 100,
            "hypernet": hypernet, "scores": {"m": scores}, "columns": {"m": "M"}, "skipped": {}}


def test_cells_average_prompts_first_then_identities():
    results = [record("base", "a", [1.0, 0.0, None]), record("base", "b", [1.0, 1.0, 1.0])]
    rows, columns = aggregate(results, ["base"])
    assert columns == {"m": "M"}
    cell = rows[0].cells["m"]
    assert cell.mean == pytest.approx(0.75) and cell.n == 2  # (0.5 + 1.0) / 2, not 4 / 5
    assert rows[0].misses == 1
    assert "| Base model | 0.750 ± 0.250 |" in markdown(rows, columns)


def test_pictures_a_metric_asked_nothing_of_are_no_misses():
    from lowdim.metrics import Sample
    from lowdim_sd.bench.quality import scores_of

    class NightOnly:
        name, column = "m", "M"

        def applies(self, sample):
            return "night" in sample.prompt

        def score(self, samples):
            assert all("night" in s.prompt for s in samples)  # never handed a picture it has no question for
            return [None if "dark" in s.prompt else 1.0 for s in samples]

    prompts = ["a sks face at night", "a sks face", "a dark sks face at night", "a sks face in a city"]
    got = scores_of({"m": NightOnly()}, [Sample(None, (), p, "sks") for p in prompts])
    assert got == {"scores": {"m": [1.0, None, None, None]}, "not_asked": {"m": 2}}
    results = [record("base", "a", got["scores"]["m"]) | {"not_asked": got["not_asked"]}]
    rows, _ = aggregate(results, ["base"])
    assert rows[0].misses == 1 and rows[0].cells["m"].mean == 1.0  # the dark one; not the two not asked


def test_a_row_mixing_two_hypernetworks_is_refused():
    results = [record("ours", "a", [1.0], hypernet="h1"), record("ours", "b", [1.0], hypernet="h2")]
    with pytest.raises(LowdimError, match="different hypernetworks"):
        aggregate(results, ["ours"])


def test_a_claimed_task_is_skipped_until_released_and_a_dead_owners_claim_is_taken_over(tmp_path):
    path = tmp_path / "results" / "m" / "a.json"
    assert claim(path)
    assert not claim(path)  # this process is alive and holds it
    release(path)
    assert claim(path)
    path.with_suffix(".claim").write_text(json.dumps({"host": os.uname().nodename, "pid": 2**22 + 12345}))
    assert claim(path)  # no such process: stale


def job_for(tiny_sd, identities, out, **options):
    return QualityJob(identities=identities, model=str(tiny_sd), out=out, metrics=[], prompts=["a [V] face"],
                      sample_steps=2, **options)


def test_runs_every_task_once_resumes_and_refuses_other_settings(tiny_sd, identities, tmp_path, quick_methods):
    out = tmp_path / "bench"
    job = job_for(tiny_sd, identities, out, methods=["base", "db-agg-2"])
    results = run_quality(job)
    assert sorted((r["method"], r["identity"]) for r in results) == [
        ("base", "id-0"), ("base", "id-1"), ("db-agg-2", "id-0"), ("db-agg-2", "id-1")]
    assert all((out / "images" / r["method"] / r["identity"] / "00.png").exists() for r in results)
    assert next(r for r in results if r["method"] == "db-agg-2")["bytes"] > 0
    stamp = result_path(out, type("T", (), {"method": "base", "identity": "id-0"})).stat().st_mtime_ns
    assert len(run_quality(job_for(tiny_sd, identities, out, methods=["base", "db-agg-2"]))) == 4
    assert result_path(out, type("T", (), {"method": "base", "identity": "id-0"})).stat().st_mtime_ns == stamp
    with pytest.raises(LowdimError, match="other settings"):
        run_quality(job_for(tiny_sd, identities, out, methods=["base"], seed=1))
    rows, columns = aggregate(results, job.methods)
    paths = write_reports(job, results, rows, columns, 2, [0])
    assert [p.name for p in paths] == ["table.md", "table.json", "gallery.png"]
    # Scores without their images (as unpacked from a results archive): the table, and no gallery.
    shutil.rmtree(out / "images" / "db-agg-2")
    with pytest.warns(UserWarning, match="no gallery.*gallery.png is from an earlier run"):
        write_reports(job, results, rows, columns, 2, [0], ["db-agg-2"])
    (out / "gallery.png").unlink()
    with pytest.warns(UserWarning, match="no gallery") as caught:
        paths = write_reports(job, results, rows, columns, 2, [0], ["db-agg-2"])
    assert "earlier run" not in str(caught[0].message)
    assert [p.name for p in paths] == ["table.md", "table.json"] and not (out / "gallery.png").exists()


@pytest.mark.parametrize("method", ["lidb-db", "ti"])
def test_batched_rows_give_the_adapters_of_one_at_a_time_training(tiny_sd, identities, tmp_path, quick_methods,
                                                                  method):
    from safetensors.torch import load_file

    # At a high rate AdamW can turn float rounding into differences of up to lr on a coordinate whose gradient is
    # near zero (tests/sd/test_train_batching.py); at 2e-3 batched and alone agree to 2e-6 (LiDB) and 1e-8 (TI).
    # TI's early steps move both faces' vectors the same way (by ±lr where their gradients share a sign), so its
    # identities end only ~2e-4 apart and its tolerance is tighter.
    quick_methods[method] = dataclasses.replace(quick_methods[method], learning_rate=2e-3)
    same = {"lidb-db": 1e-4, "ti": 1e-5}[method]
    alone = job_for(tiny_sd, identities, tmp_path / "alone", methods=[method])
    together = job_for(tiny_sd, identities, tmp_path / "together", methods=[method], batch_subjects=2)
    from lowdim_sd.bench.batched import adapter_path, train_batched
    from lowdim_sd.bench.methods import personalize_subject
    from lowdim_sd.bench.quality import prepare
    from lowdim_sd.images import load_image
    from lowdim_sd.loading import load_sd

    tasks = prepare(together)
    train_batched(together, tasks, 2)
    trained = []
    for task in tasks:
        model = load_sd(str(tiny_sd))
        work = tmp_path / "alone" / task.identity
        done = personalize_subject(model, quick_methods[method], load_image(task.reference, 16), work,
                                   None, alone.token, alone.seed)
        mine, batched = load_file(done.file), load_file(adapter_path(together.out, method, task.identity))
        assert mine.keys() == batched.keys()
        for key, value in mine.items():
            assert torch.allclose(value.float(), batched[key].float(), atol=same, rtol=0), key
        trained.append(mine)
    # The identities' files differ far beyond that tolerance, so one trained on another's face fails above.
    assert max(float((value.float() - trained[1][key].float()).abs().max()) for key, value in trained[0].items()) \
        > 10 * same
    # The tasks then load the batch's files (a TI file as an embedding) and score what they draw.
    from lowdim_sd.bench.quality import run_quality

    scored = {r["identity"]: r for r in run_quality(together)}
    apart = {r["identity"]: r for r in run_quality(alone)}
    assert sorted(scored) == sorted(apart) == sorted(t.identity for t in tasks)
    for identity, record in scored.items():
        assert record["bytes"] == apart[identity]["bytes"]
        drawn = [np.asarray(Image.open(job.out / "images" / method / identity / "00.png"), float)
                 for job in (together, alone)]
        assert np.abs(drawn[0] - drawn[1]).max() <= 2, identity  # the same picture, to rounding


def test_a_scaled_row_draws_its_rows_file_at_that_scale(tiny_sd, identities, tmp_path, quick_methods):
    """ROW@S: the row's adapter, drawn on a fresh model at scale S, as `lowdim generate --adapter FILE:S` does."""
    from lowdim_sd.bench.methods import personalize_subject
    from lowdim_sd.bench.quality import generate_batch, prepare
    from lowdim_sd.draw_parts import DrawParts
    from lowdim_sd.generate import attach_adapters
    from lowdim_sd.images import load_image
    from lowdim_sd.loading import load_sd

    quick_methods["lidb-db"] = dataclasses.replace(quick_methods["lidb-db"], learning_rate=0.3)  # a visible change
    apart = "lidb-db@te=0@start=0.5"
    job = job_for(tiny_sd, identities, tmp_path / "bench", methods=["base", "lidb-db", "lidb-db@0.5",
                                                                      "lidb-db@0.000001", apart])
    results = {(r["method"], r["identity"]): r for r in run_quality(job)}

    def drawn(method: str, identity: str) -> np.ndarray:
        return np.asarray(Image.open(job.out / "images" / method / identity / "00.png"), float)

    for task in (t for t in prepare(job) if t.method == "lidb-db"):
        assert np.abs(drawn("lidb-db", task.identity) - drawn("base", task.identity)).max() > 20
        assert np.abs(drawn("lidb-db@0.000001", task.identity) - drawn("base", task.identity)).max() <= 2
        done = personalize_subject(load_sd(str(tiny_sd)), quick_methods["lidb-db"], load_image(task.reference, 16),
                                   tmp_path / "alone" / task.identity, None, job.token, job.seed)
        model = load_sd(str(tiny_sd))
        attach_adapters(model, [(done.file, 0.5)])
        mine = np.asarray(generate_batch(model, job, [job.prompts[0].replace("[V]", job.token)])[0], float)
        assert np.abs(mine - drawn("lidb-db@0.5", task.identity)).max() <= 2
        model = load_sd(str(tiny_sd))
        attach_adapters(model, [(done.file, 1.0)])
        parts = DrawParts(text_encoder_scale=0.0, adapter_start=0.5)
        mine = np.asarray(generate_batch(model, job, [job.prompts[0].replace("[V]", job.token)], parts)[0], float)
        assert np.abs(mine - drawn(apart, task.identity)).max() <= 2
        assert np.abs(mine - drawn("lidb-db", task.identity)).max() > 2
        assert results[("lidb-db@0.5", task.identity)]["bytes"] == results[("lidb-db", task.identity)]["bytes"]


def test_a_row_drawn_another_way_draws_its_rows_file_instead_of_training_again(tiny_sd, identities, tmp_path,
                                                                                quick_methods, monkeypatch):
    from lowdim_sd.bench import methods, quality

    trained = []

    def counted(model, method, *args, **kwargs):
        trained.append(method.name)
        return methods.personalize_subject(model, method, *args, **kwargs)

    monkeypatch.setattr(quality, "personalize_subject", counted)
    job = job_for(tiny_sd, identities, tmp_path / "bench", methods=["no-hyper@te=0", "no-hyper", "no-hyper@0.5"])
    results = {(r["method"], r["identity"]): r for r in run_quality(job)}
    assert len(trained) == 2  # whichever row of an identity comes first trains; the other two draw its file
    for identity in ("id-0", "id-1"):
        first = results[("no-hyper@te=0", identity)]
        assert all(results[(row, identity)]["seconds"] == first["seconds"] for row in ("no-hyper", "no-hyper@0.5"))
        assert (job.out / "adapters" / "no-hyper" / f"{identity}.safetensors").is_file()


def test_command_reports_a_bad_identities_folder_in_one_line(tmp_path, capsys):
    code = main(["bench", "quality", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]


def test_unknown_method_is_named(tmp_path, identities, capsys):
    code = main(["bench", "quality", "-i", str(identities), "--methods", "ours,dreamboth", "-o", str(tmp_path / "o")])
    assert code == 1
    assert "dreamboth" in capsys.readouterr().err


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_missing_identities_folder_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "quality", "-i", str(tmp_path / "missing"), "-o", str(out), "--methods", "base"]) == 1
    assert "missing" in one_line_error(capsys) and not out.exists()


@pytest.mark.parametrize(("option", "value", "named"), [
    ("--sample-steps", "-1", "--sample-steps"), ("--sample-steps", "0", "--sample-steps"), ("--limit", "0", "--limit"),
    ("--workers", "0", "--workers"), ("--threads", "0", "--threads"), ("--batch-subjects", "0", "--batch-subjects"),
    ("--gallery-identities", "0", "--gallery-identities"), ("--gallery-prompts", "a,b", "'a'"),
    ("--gallery-prompts", "0,-1", "'-1'"), ("--gallery-prompts", "1", "'1'"), ("--gallery-methods", "bse", "bse"),
    ("--metrics", "nope", "nope"), ("--dtype", "fp8", "fp8")])
def test_bad_options_are_one_line_naming_them_before_anything_is_written(tmp_path, identities, capsys, option,
                                                                         value, named):
    out = tmp_path / "out"
    for run in ("--run", "--no-run"):
        code = main(["bench", "quality", "-i", str(identities), "-o", str(out), "--methods", "base",
                     "--prompt", "a [V] face", option, value, run])
        assert code == 1
        assert named in one_line_error(capsys)
        assert not out.exists()


def test_rows_needing_a_hypernetwork_are_refused_before_any_work(tmp_path, tiny_sd, identities, capsys):
    out = tmp_path / "out"
    # A model folder ships no hypernetwork, so the hyper rows need --hypernet.
    assert main(["bench", "quality", "-i", str(identities), "-m", str(tiny_sd), "-o", str(out),
                 "--methods", "base,ours"]) == 1
    line = one_line_error(capsys)
    assert "ours" in line and "--hypernet" in line and not out.exists()
    # Tabulating needs no hypernetwork.
    stored = result_path(out, type("T", (), {"method": "ours", "identity": "id-0"}))
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps(record("ours", "id-0", [0.5])))
    assert main(["bench", "quality", "-i", str(identities), "-m", str(tiny_sd), "-o", str(out), "--methods", "ours",
                 "--no-run", "--metrics", "tinyfaces-style"]) == 0


def test_the_default_gallery_prompts_fit_a_single_prompt_and_dtype_help_matches_its_default(capsys):
    from lowdim_cli.bench_command import prompt_numbers

    assert prompt_numbers(None, ["a [V] face"]) == [0] and prompt_numbers("", ["a", "b"]) == []
    assert main(["bench", "quality", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "fp32 (the default" in text and "[default: fp32]" in text


def test_the_methods_help_names_every_row(capsys):
    from lowdim_sd.bench.methods import METHODS

    assert main(["bench", "quality", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert all(f"{name}," in text or f"{name}." in text for name in METHODS)


def test_a_keep_styles_row_at_any_weight():
    from lowdim_sd.bench.methods import METHODS, method_label, parse_methods

    ours, styles = parse_methods("ours, ours-styles-0.05")
    assert ours is METHODS["ours"]
    assert (styles.name, styles.label, styles.keep_styles) == ("ours-styles-0.05", "Ours (keep styles 0.05)", 0.05)
    assert dataclasses.replace(styles, name="ours-styles", label=METHODS["ours-styles"].label, keep_styles=0.2,
                               note=METHODS["ours-styles"].note) == METHODS["ours-styles"]  # only the weight differs
    for bad in ("ours-styles-0", "ours-styles-x", "ours-styles--1", "ours-styles-1e-3"):
        with pytest.raises(LowdimError, match=rf"unknown method\(s\) {bad}; .*ours-styles-λ"):
            parse_methods(bad)
    assert method_label("ours-styles-1.5") == "Ours (keep styles 1.5)"
    described = parse_methods("ours-described-styles-0.2")[0]
    assert (described.label, described.keep_styles, described.describe) == (
        "Ours (looks in words, keep styles 0.2)", 0.2, True)
    assert dataclasses.replace(described, name="ours-described-styles", label=METHODS["ours-described-styles"].label,
                               keep_styles=0.05, note=METHODS["ours-described-styles"].note) == \
        METHODS["ours-described-styles"]
    assert "--keep-styles 0.2" in described.note
    with pytest.raises(LowdimError, match=r"ours-described-styles-λ"):
        parse_methods("ours-described-0.2")  # only the keep-styles rows take a weight
    assert method_label("a-row-since-removed") == "a-row-since-removed"  # an old results folder still tabulates


def test_any_row_with_an_adapter_file_can_be_drawn_at_a_scale():
    from lowdim_sd.bench.methods import METHODS, parse_methods

    scaled, styled = parse_methods("ours-described@0.3, ours-styles-0.1@1.5")
    assert dataclasses.replace(scaled, name="ours-described", label=METHODS["ours-described"].label,
                               adapter_scale=1.0, note=METHODS["ours-described"].note) == METHODS["ours-described"]
    assert (scaled.label, scaled.adapter_scale) == ("Ours (looks in words) at scale 0.3", 0.3)
    assert (styled.keep_styles, styled.adapter_scale) == (0.1, 1.5)
    apart = parse_methods("ours-described@te=0@start=0.3")[0]
    assert (apart.adapter_scale, apart.parts.text_encoder_scale, apart.parts.adapter_start) == (1.0, 0.0, 0.3)
    assert apart.label == "Ours (looks in words), text encoder's part at 0, UNet part from 30% of the steps"
    window = parse_methods("ours-described-styles@te=0@start=0.2@end=0.8")[0]
    assert (window.parts.adapter_start, window.parts.adapter_end, window.drawn_from_file) == (0.2, 0.8, True)
    assert window.label.endswith("text encoder's part at 0, UNet part from 20% to 80% of the steps")
    both = parse_methods("lidb-db@0.5@te=0.25")[0]
    assert (both.adapter_scale, both.parts.text_encoder_scale, both.drawn_from_file) == (0.5, 0.25, True)
    assert not METHODS["ours"].drawn_from_file
    # rows that write no adapter file (dreambooth@0.5, base@0.5) have their own line: tests/sd/test_bench_inputs.py
    for bad in ("ours@0", "ours@x", "nothing@0.5", "ours@0.5@0.5", "ours@start=1", "ours@te=0@te=1", "ours@tee=0",
                "ours@start=0.5@end=0.5"):
        with pytest.raises(LowdimError, match=rf"unknown method\(s\) {bad}; .*ROW@S"):
            parse_methods(bad)
