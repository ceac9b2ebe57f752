"""`lowdim bench quality/speed --no-run` tabulate what --out holds: an --out holding nothing is one line, not an empty
table, and tabulating needs no reference folder."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from lowdim_cli.main import main
from lowdim_sd.bench.speed import Store
from lowdim_sd.bench.speed_setup import resolve_settings

NOTHING = "no results to tabulate (run without --no-run first)"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def quality(tiny_sd, identities, out, *flags) -> int:
    return main(["bench", "quality", "-i", str(identities), "-m", str(tiny_sd), "-o", str(out), "--methods", "base",
                 "--metrics", "tinyfaces-style", "--no-run", *flags])


def store_result(out, identity, score):
    path = out / "results" / "base" / f"{identity}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "method": "base", "identity": identity, "reference": f"gone/{identity}.png", "seconds": 1.0, "bytes": 0,
        "hypernet": None, "scores": {"m": [score]}, "columns": {"m": "M"}, "skipped": {}}))


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "empty"])
def test_quality_no_run_on_an_out_without_results_is_one_line_and_writes_nothing(tiny_sd, tmp_path, capsys,
                                                                                    exists):
    identities = tmp_path / "heldout"
    identities.mkdir()
    Image.new("RGB", (16, 16)).save(identities / "id-0.png")
    out = tmp_path / "typo_folder"
    if exists:
        out.mkdir()
    assert quality(tiny_sd, identities, out) == 1
    line = one_line_error(capsys)
    assert str(out) in line and NOTHING in line
    assert out.is_dir() == exists and (not exists or not any(out.iterdir()))


def test_quality_no_run_tabulates_the_stored_identities_without_the_reference_folder(tiny_sd, tmp_path, capsys):
    out = tmp_path / "bench"
    store_result(out, "id-0", 0.25)
    store_result(out, "id-1", 0.75)
    assert quality(tiny_sd, tmp_path / "gone", out) == 0
    row = json.loads((out / "table.json").read_text())["rows"][0]
    assert row["identities"] == 2 and row["metrics"]["m"]["mean"] == pytest.approx(0.5)
    assert quality(tiny_sd, tmp_path / "gone", out, "--limit", "1") == 0
    row = json.loads((out / "table.json").read_text())["rows"][0]
    assert row["identities"] == 1 and row["metrics"]["m"]["mean"] == pytest.approx(0.25)
    # Running still needs the reference folder.
    capsys.readouterr()
    assert main(["bench", "quality", "-i", str(tmp_path / "gone"), "-m", str(tiny_sd), "-o", str(out),
                 "--methods", "base", "--metrics", "tinyfaces-style"]) == 1
    assert "gone" in one_line_error(capsys)


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "empty"])
def test_speed_no_run_on_an_out_without_results_is_one_line_and_writes_nothing(tmp_path, capsys, exists):
    out = tmp_path / "typo_folder"
    if exists:
        out.mkdir()
    assert main(["bench", "speed", "--quick", "--device", "cpu", "--no-run", "-o", str(out)]) == 1
    line = one_line_error(capsys)
    assert str(out) in line and NOTHING in line
    assert out.is_dir() == exists and (not exists or not any(out.iterdir()))


def test_speed_no_run_tabulates_what_is_stored_and_refuses_to_overwrite_it(tmp_path, capsys):
    out = tmp_path / "speed"
    store = Store(out)
    store.claim(resolve_settings(True, "cpu", "auto", None, None), overwrite=False)
    store.save("load", {"label": "model load", "seconds": 1.0, "samples": [1.0]})
    flags = ["bench", "speed", "--quick", "--device", "cpu", "--no-run", "-o", str(out)]
    assert main([*flags, "--overwrite"]) == 1
    assert "--overwrite" in one_line_error(capsys) and store.done(("load",))
    assert main(flags) == 0
    assert json.loads((out / "speed.json").read_text())["measurements"]["load"]["seconds"] == 1.0


def test_quality_no_run_needs_no_identities_flag_and_takes_the_stored_settings(tiny_sd, tmp_path, capsys):
    from lowdim_sd.bench.quality import QualityJob, settings

    out = tmp_path / "bench"
    store_result(out, "id-0", 0.5)
    stored = settings(QualityJob(identities=None, model=str(tiny_sd), out=out, metrics=["tinyfaces-style"],
                                 sample_steps=2, prompts=["a [V] face"]))
    (out / "settings.json").write_text(json.dumps(stored))
    code = main(["bench", "quality", "-m", str(tiny_sd), "-o", str(out), "--methods", "base", "--no-run"])
    assert code == 0, capsys.readouterr()  # no -i, and no --sample-steps 2 or --metrics repeated
    assert json.loads((out / "table.json").read_text())["rows"][0]["identities"] == 1
    capsys.readouterr()
    assert main(["bench", "quality", "-m", str(tiny_sd), "-o", str(out), "--methods", "base"]) == 1
    assert "-i/--identities is needed to run the benchmark" in one_line_error(capsys)


def test_a_prompt_that_does_not_name_the_subject_is_warned_about(tiny_sd, tmp_path):
    from lowdim_sd.bench.quality import QualityJob, check_job

    job = QualityJob(identities=tmp_path, model=str(tiny_sd), out=tmp_path / "o", metrics=["tinyfaces-style"],
                     prompts=["a [V] face", "a face at night"])
    said = r"QualityJob\(prompts=\.\.\.\) 'a face at night' does not name the subject: \[V\]"
    with pytest.warns(UserWarning, match=said):
        check_job(job)
