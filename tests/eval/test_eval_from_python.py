"""``run_eval(EvalJob(...))`` as a notebook user types it (review AK): str paths and a str of metric names work as
the CLI's do (AK1, AK2), its notes and skip reasons name EvalJob's parameters, not the CLI's flags, while under
``lowdim`` they stay word for word (AK3b), the report shows as the table ``lowdim eval`` prints (AK3c), and
docs/eval.md's whole-folder example runs (AK3a)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_sd.eval import hub
from lowdim_sd.eval.job import TINYFACES_METRICS, EvalJob, run_eval
from lowdim_sd.eval.report import EvalReport, MetricResult

DOCS = Path(__file__).resolve().parents[2] / "docs" / "eval.md"


@pytest.fixture
def folder(tmp_path, noise, monkeypatch):
    """An eval folder of two 32 px pictures as TinyFaces draws them, and a reference photo beside it; the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    for seed in range(2):
        noise(seed, 32).save(tmp_path / "images" / f"{seed}.png")
    noise(9, 64).save(tmp_path / "face.png")
    (tmp_path / "images" / "prompts.json").write_text(json.dumps(
        {"token": "sks", "images": {"0.png": "a photo of a [V] face", "1.png": "a [V] face"}}))
    return tmp_path


def _scores(report: EvalReport) -> dict[str, list]:
    return {result.name: result.scores for result in report.results}


# AK1 ---------------------------------------------------------------------------------------------------------------


def test_str_paths_score_as_paths_do(folder):
    as_str = run_eval(EvalJob(folder="images", metrics=TINYFACES_METRICS, references=("face.png",)))
    as_path = run_eval(EvalJob(folder=Path("images"), metrics=TINYFACES_METRICS, references=(Path("face.png"),)))
    assert _scores(as_str) == _scores(as_path) and as_str.results[0].summary.scored == 2


def test_one_reference_as_a_str_is_one_file_not_its_letters(folder):
    job = EvalJob(folder="images", references="face.png")
    assert job.folder == Path("images") and job.references == (Path("face.png"),)


@pytest.mark.parametrize(("fields", "said"), [
    ({"folder": 3}, "EvalJob: folder= takes a path (a str or Path), got a int"),
    ({"folder": "images", "references": (b"face.png",)}, "EvalJob: references= takes a path (a str or Path), "
                                                         "got a bytes"),
    ({"folder": "images", "references": 7}, "EvalJob: references= takes a path (a str or Path), got a int"),
])
def test_anything_else_is_one_line(fields, said):
    with pytest.raises(LowdimError) as caught:
        EvalJob(**fields)
    assert str(caught.value) == said


# AK2 ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "names"), [("tinyfaces-identity", ("tinyfaces-identity",)),
                                              ("tinyfaces-identity, tinyfaces-image",
                                               ("tinyfaces-identity", "tinyfaces-image"))])
def test_metrics_as_text_are_read_as_the_cli_reads_them(given, names):
    assert EvalJob(folder="images", metrics=given).metrics == names


def test_one_metric_as_a_str_scores(folder):
    report = run_eval(EvalJob(folder="images", metrics="tinyfaces-identity", references=("face.png",)))
    assert [result.name for result in report.results] == ["tinyfaces-identity"]


# AK3b --------------------------------------------------------------------------------------------------------------


def test_the_no_reference_note_names_evaljobs_references_from_python(folder):
    notes = " ".join(run_eval(EvalJob(folder="images", metrics="tinyfaces-identity")).notes)
    assert "EvalJob(references=...)" in notes and "--references" not in notes


def test_the_no_reference_note_keeps_the_flag_under_the_command(folder):
    with command_line():
        notes = " ".join(run_eval(EvalJob(folder="images", metrics="tinyfaces-identity")).notes)
    assert "pass the reference photo(s) with --references/-r FILE_OR_FOLDER or list them in the prompts file" in notes


@pytest.mark.parametrize(("metric", "key"), [("dino", '{"dino": {"model": PATH}}'),
                                             ("clip-t", '{"clip-i": {"model": PATH}, "clip-t": {"model": PATH}}')])
def test_a_hub_model_not_to_be_had_is_skipped_naming_evaljobs_options(folder, monkeypatch, metric, key):
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    report = run_eval(EvalJob(folder="images", metrics=f"tinyfaces-identity,{metric}",
                              options={metric: {"model": "lowdim-tests/no-such-model"}}))
    reason = report.skipped_metrics[metric]
    assert reason.endswith(f"download it where there is network, or give a local copy as EvalJob(options={key})")
    assert "--" not in reason


def test_a_missing_model_folder_names_evaljobs_options(folder):
    report = run_eval(EvalJob(folder="images", metrics="tinyfaces-identity,dino",
                              options={"dino": {"model": str(folder / "none" / "dino")}}))
    assert report.skipped_metrics["dino"].endswith('not found; give a model folder as '
                                                   'EvalJob(options={"dino": {"model": PATH}})')


@pytest.mark.parametrize(("flag", "metric"), [("--dino-model", "dino"), ("--clip-model", "clip-t")])
def test_under_the_command_the_skip_reason_keeps_its_flag(folder, monkeypatch, flag, metric):
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with command_line():
        report = run_eval(EvalJob(folder="images", metrics=f"tinyfaces-identity,{metric}",
                                  options={metric: {"model": "lowdim-tests/no-such-model"}}))
    assert report.skipped_metrics[metric].endswith(f", or pass {flag} PATH to a local copy")


def test_a_missing_face_model_names_evaljobs_options(folder):
    from lowdim_sd.face_models import faces_available

    if not faces_available():
        pytest.skip("face-rec needs the faces extra")
    report = run_eval(EvalJob(folder="images", metrics="tinyfaces-identity,face-rec",
                              options={"face-rec": {"model": "nope.dat"}}))
    reason = report.skipped_metrics["face-rec"]
    assert reason.startswith('face-rec model nope.dat (EvalJob(options={"face-rec": {"model": PATH}})) not found')
    assert "--" not in reason


# AK3c --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def report() -> EvalReport:
    return EvalReport(images=["0.png", "1.png"], prompts=["a <b>", "a [V] face"],
                      results=[MetricResult("tinyfaces-identity", "Identity", [0.25, None]),
                               MetricResult("tinyfaces-style", "Style acc", [1.0, None], [True, False])],
                      skipped_metrics={"dino": "no <model>"}, skipped_images=["x.png"], notes=["no face in 1.png"])


def test_the_repr_is_one_short_line_of_the_means(report):
    shown = repr(report)
    assert shown == ("EvalReport(2 images; Identity 0.250 (1 scored, 1 miss), Style acc 1.000 (1 scored, "
                     "1 not asked); skipped: dino; 1 image left out; 1 note)")


def test_the_notebook_view_is_the_table_lowdim_eval_prints(report):
    page = report._repr_html_()
    headers = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", page)
    assert headers == ["metric", "mean ↑", "scored", "misses", "not asked"]
    rows = [re.findall(r"<td(?: [^>]*)?>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", page)]
    assert ["Identity", "0.250", "1", "1", "0"] in rows and ["Style acc", "1.000", "1", "0", "1"] in rows
    assert "skipped dino: no &lt;model&gt;" in page and "<model>" not in page
    assert "1 image left out" in page and "note: no face in 1.png" in page


def test_the_views_never_raise(report):
    report.results = None
    assert repr(report).startswith("EvalReport(") and report._repr_html_().startswith("<")


# AK3a --------------------------------------------------------------------------------------------------------------


def test_the_docs_whole_folder_example_runs(folder):
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### A whole folder from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    scope: dict = {}
    exec(compile(code, str(DOCS), "exec"), scope)  # noqa: S102 - the page's own example
    assert isinstance(scope["report"], EvalReport) and scope["report"].results[0].summary.scored == 2
    assert (folder / "results" / "eval.json").is_file() and (folder / "results" / "eval.md").is_file()
