"""Scoring and the quality benchmark from Python: a refusal names the parameter the script passed
(``EvalJob(metrics=...)``, ``QualityJob(gallery_prompts=...)``), never a flag it never typed, while the ``lowdim``
command keeps its flags word for word; and ``EvalJob(metrics=...)`` reads a list of names as it reads comma text."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from words_for_tests import both  # tests/sd, on the path as pytest puts it

from lowdim import option_words
from lowdim.errors import LowdimError
from lowdim_sd.eval.job import EvalJob, check_crop, nothing_scored

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("metrics", "python", "cli"), [
    ("", "EvalJob(metrics=...) is empty; give a comma list such as face-rec,dino,clip-i,clip-t",
     "--metrics is empty; give a comma list such as face-rec,dino,clip-i,clip-t"),
    ([], "EvalJob(metrics=...) is empty; give a comma list such as face-rec,dino,clip-i,clip-t",
     "--metrics is empty; give a comma list such as face-rec,dino,clip-i,clip-t"),
    ("dino, dino", "EvalJob(metrics=...) names 'dino' twice", "--metrics names 'dino' twice"),
    (["dino", "dino"], "EvalJob(metrics=...) names 'dino' twice", "--metrics names 'dino' twice"),
])
def test_metric_names_are_refused_naming_the_parameter_or_the_flag(metrics, python, cli):
    assert both(lambda: EvalJob(folder="x", metrics=metrics)) == (python, cli)


def test_a_list_of_metric_names_is_read_as_the_comma_text_is():
    text = EvalJob(folder="x", metrics="face-rec,dino").metrics
    assert EvalJob(folder="x", metrics=["face-rec,dino"]).metrics == text == ("face-rec", "dino")
    assert EvalJob(folder="x", metrics=[" dino ", "clip-i"]).metrics == ("dino", "clip-i")
    assert EvalJob(folder="x", metrics=("tinyfaces-identity",)).metrics == ("tinyfaces-identity",)
    with pytest.raises(LowdimError, match=r"^EvalJob: metrics= takes metric names .*got a int among them$"):
        EvalJob(folder="x", metrics=["dino", 3])  # type: ignore[list-item]  # what a YAML file may hold


def test_a_crop_no_face_can_use_is_refused_naming_the_parameter_or_the_flag():
    python, cli = both(lambda: check_crop(True, 512, -1.0))
    assert python.startswith("EvalJob(margin=...) must be 0 or more") and cli.startswith("--margin must be 0 or more")
    python, cli = both(lambda: check_crop(True, 4, 0.6))
    assert python.startswith("EvalJob(crop_size=...) must be 8 to 4096 pixels")
    assert cli.startswith("--crop-size must be 8 to 4096 pixels")


def test_nothing_scored_on_tiny_images_suggests_the_metrics_as_the_reader_gives_them():
    result = SimpleNamespace(name="dino", summary=SimpleNamespace(scored=0, not_asked=0))
    report = SimpleNamespace(results=[result], images=["a.png"], smallest_side=32)
    python = nothing_scored(report, ("dino",))  # type: ignore[arg-type]  # what it reads of a report
    with option_words.command_line():
        cli = nothing_scored(report, ("dino",))  # type: ignore[arg-type]
    assert python is not None and cli is not None
    assert python.endswith("score them with EvalJob(metrics='tinyfaces-identity,tinyfaces-style,tinyfaces-image')")
    assert cli.endswith("score them with --metrics tinyfaces-identity,tinyfaces-style,tinyfaces-image")


def test_options_for_a_metric_not_asked_for_name_the_parameter_or_the_flag():
    from lowdim_sd.eval.report import load_metrics

    python, cli = both(lambda: load_metrics(["tinyfaces-style"], {"dino": {}}))
    assert python == "options given for metric 'dino', which is not among EvalJob(metrics=...) tinyfaces-style"
    assert cli == "options given for metric 'dino', which is not among --metrics tinyfaces-style"


def quality_job(tmp_path, **fields):
    from lowdim_sd.bench.quality import QualityJob

    return QualityJob(**{"identities": tmp_path / "ids", "out": tmp_path / "out", "methods": ["base"],
                         "prompts": ["a [V] face", "a [V] face at night"], **fields})


@pytest.mark.parametrize(("gallery", "python", "cli"), [
    ({"gallery_identities": 0}, "QualityJob(gallery_identities=...) must be at least 1; got 0",
     "--gallery-identities must be at least 1; got 0"),
    ({"gallery_prompts": [2]}, "QualityJob(gallery_prompts=...): '2' is not a prompt number (0 to 1)",
     "--gallery-prompts: '2' is not a prompt number (0 to 1)"),
    ({"gallery_methods": ["bse"]}, "QualityJob(gallery_methods=...): unknown method(s) bse",
     "--gallery-methods: unknown method(s) bse"),
])
def test_a_bad_gallery_setting_names_the_parameter_or_the_flag(tmp_path, gallery, python, cli):
    from lowdim_sd.bench.report import check_gallery

    said = both(lambda: check_gallery(quality_job(tmp_path, **gallery)))
    assert said[0].startswith(python) and said[1].startswith(cli)


def test_a_row_the_model_cannot_run_is_left_out_of_the_methods_as_the_reader_gave_them(tmp_path, monkeypatch):
    from lowdim_sd.bench import quality_rows

    monkeypatch.setattr(quality_rows, "model_describer", lambda model: None)
    python, cli = both(lambda: quality_rows.check_described_rows(quality_job(tmp_path, methods=["ours-described"])))
    assert python.endswith("has none; leave it out of QualityJob(methods=...)")
    assert cli.endswith("has none; leave it out of --methods")


def test_a_row_repeating_another_is_left_out_of_the_methods_as_the_reader_gave_them(tmp_path):
    from PIL import Image

    from lowdim_sd.bench.quality import check_job

    Image.new("RGB", (32, 32)).save(tmp_path / "id-0.png")
    job = quality_job(tmp_path, identities=tmp_path, model="tinyfaces", methods=["ours", "ours-k1"])
    python, cli = both(lambda: check_job(job))
    assert python.endswith("which has no refinement iterations; leave it out of QualityJob(methods=...)")
    assert cli.endswith("retrieval head, which has no refinement iterations; leave it out of --methods")


def test_a_margin_or_size_no_crop_can_use_is_refused_from_python_with_the_crop_off_too():
    """The command refuses --margin without --crop before this; a Python caller who passes one means it."""
    python, _ = both(lambda: check_crop(False, 512, -1.0))
    assert python.startswith("EvalJob(margin=...) must be 0 or more")
    python, _ = both(lambda: check_crop(False, 4, 0.6))
    assert python.startswith("EvalJob(crop_size=...) must be 8 to 4096 pixels")
