"""Which rows `lowdim bench quality` runs and tabulates, and what --no-run does with the flags of a run (review E:
E3 a row repeating another exactly, E4 --gallery-prompts against the results' prompts, E5 run flags under --no-run,
E6 --no-run's rows and empty cells)."""

from __future__ import annotations

import json

import pytest

from lowdim.errors import LowdimError
from lowdim_cli.main import main


def store(out, tiny_sd, methods=("base",), prompts=("a [V] face", "a [V] face at night")):
    from lowdim_sd.bench.quality import QualityJob, settings

    for method in methods:
        path = out / "results" / method / "id-0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "method": method, "identity": "id-0", "reference": "gone/id-0.png", "seconds": 1.0, "bytes": 0,
            "hypernet": None, "scores": {"m": [0.5] * len(prompts)}, "columns": {"m": "M"}, "skipped": {}}))
    job = QualityJob(identities=None, model=str(tiny_sd), out=out, metrics=["tinyfaces-style"], sample_steps=2,
                     prompts=list(prompts))
    (out / "settings.json").write_text(json.dumps(settings(job)))
    return out


def tabulate(capsys, tiny_sd, out, *flags) -> tuple[int, str, str]:
    code = main(["bench", "quality", "-m", str(tiny_sd), "-o", str(out), "--no-run", *flags])
    captured = capsys.readouterr()
    return code, " ".join(captured.out.split()), " ".join(captured.err.split())


# -- E3 ------------------------------------------------------------------------------------------------


def test_ours_k1_is_left_out_of_the_default_rows_for_a_retrieval_head_and_refused_asked(tmp_path):
    from PIL import Image

    from lowdim_sd.bench.quality import QualityJob, check_job, prepare

    Image.new("RGB", (32, 32)).save(tmp_path / "id-0.png")
    everything = QualityJob(identities=tmp_path, model="tinyfaces", out=tmp_path / "out")
    check_job(everything)  # as the command does first: the note waits until the job is known to be valid
    assert "ours-k1" not in everything.methods and "ours" in everything.methods
    with pytest.warns(UserWarning, match=r"ours-k1 is left out: .*retrieval head.* would repeat Ours exactly"):
        prepare(everything)
    for asked in (["ours", "ours-k1"], ["ours-k1@0.5"]):
        job = QualityJob(identities=tmp_path, model="tinyfaces", out=tmp_path / "out", methods=asked)
        with pytest.raises(LowdimError, match=rf"method '{asked[-1]}' would repeat '{asked[-1].replace('-k1', '')}' "
                                              r"exactly: .*retrieval head.*; leave it out of "
                                              r"QualityJob\(methods=\.\.\.\)"):
            check_job(job)


def test_the_default_rows_name_the_looks_only_on_a_model_with_a_describer(tiny_sd, tmp_path, monkeypatch):
    from lowdim_sd.bench import quality_rows
    from lowdim_sd.bench.methods import METHODS, get_method
    from lowdim_sd.bench.quality import QualityJob

    described = [name for name in METHODS if get_method(name).describe]
    assert "ours-described" in described and "base-described" in described
    plain = QualityJob(identities=None, model=str(tiny_sd), out=tmp_path / "out")  # a model without a describer
    quality_rows.check_rows(plain)
    assert plain.methods == [name for name in METHODS if name not in described]
    monkeypatch.setattr(quality_rows, "model_describer", lambda model: lambda image: "fair skin, short hair")
    describing = QualityJob(identities=None, model=str(tiny_sd), out=tmp_path / "out")
    quality_rows.check_rows(describing)
    assert describing.methods == list(METHODS)


@pytest.mark.parametrize(("config", "repeats"), [({"architecture": "retrieval", "iterations": 4}, True),
                                                 ({"architecture": "transformer", "iterations": 1}, True),
                                                 ({"architecture": "transformer", "iterations": 4}, False),
                                                 ({"architecture": "transformer"}, False)])
def test_k1_repeats_only_a_hypernetwork_that_refines_once_or_never(config, repeats):
    from lowdim_sd.bench.quality_rows import why_k1_repeats

    assert (why_k1_repeats(config, "h.safetensors") is not None) == repeats


# -- E4 ------------------------------------------------------------------------------------------------


def test_no_run_checks_gallery_prompts_against_the_results_prompts(tiny_sd, tmp_path, capsys):
    out = store(tmp_path / "bench", tiny_sd)
    code, _, err = tabulate(capsys, tiny_sd, out, "--gallery-prompts", "7")
    assert code == 1 and "--gallery-prompts: '7' is not a prompt number (0 to 1)" in err
    code, _, err = tabulate(capsys, tiny_sd, out, "--gallery-prompts", "1")
    assert code == 0, err


def test_no_gallery_asked_says_an_old_gallery_png_is_from_an_earlier_run(tiny_sd, tmp_path, capsys):
    out = store(tmp_path / "bench", tiny_sd)
    (out / "gallery.png").write_bytes(b"old")
    code, said, err = tabulate(capsys, tiny_sd, out, "--gallery-prompts", "")
    assert code == 0, err
    assert f"no gallery (--gallery-prompts is empty); {out / 'gallery.png'} is from an earlier run" in said + err


# -- E5 ------------------------------------------------------------------------------------------------


def test_run_flags_given_with_no_run_are_named_as_ignored(tiny_sd, tmp_path, capsys):
    out = store(tmp_path / "bench", tiny_sd)
    code, said, err = tabulate(capsys, tiny_sd, out, "--metrics", "tinyfaces-identity", "--seed", "5",
                               "--sample-steps", "9", "--workers", "2")
    assert code == 0, err
    assert ("--no-run tabulates the results with the settings they were made with: --metrics, --seed, "
            "--sample-steps, --workers are ignored") in said + err
    code, said, err = tabulate(capsys, tiny_sd, out)
    assert "ignored" not in said + err


# -- E6 ------------------------------------------------------------------------------------------------


def test_no_run_without_methods_tabulates_the_rows_with_results_and_empty_cells_read_dash(tiny_sd, tmp_path,
                                                                                         capsys):
    out = store(tmp_path / "bench", tiny_sd, methods=("no-hyper", "base"))
    code, _, err = tabulate(capsys, tiny_sd, out)
    assert code == 0, err
    assert [row["method"] for row in json.loads((out / "table.json").read_text())["rows"]] == ["no-hyper", "base"]
    code, _, err = tabulate(capsys, tiny_sd, out, "--methods", "base,lora-db")
    assert code == 0, err
    empty = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| LoRA DreamBooth")]
    assert empty == ["| LoRA DreamBooth | – | – | – | 0 |"]


def test_no_run_without_methods_on_an_out_without_results_is_still_the_one_line(tiny_sd, tmp_path, capsys):
    code, _, err = tabulate(capsys, tiny_sd, tmp_path / "empty")
    assert code == 1 and err == f"Error: {tmp_path / 'empty'}: no results to tabulate (run without --no-run first)"
