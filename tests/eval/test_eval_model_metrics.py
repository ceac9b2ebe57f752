"""``lowdim eval`` without --metrics scores pictures with the metrics of the model that drew them (prompts.json's
``settings.model``): TinyFaces' own for its 32 px pictures, which the paper's face detector cannot read."""

from __future__ import annotations

import json
import shutil

import pytest

from lowdim_cli.main import main
from lowdim_sd.eval.job import TINYFACES_METRICS
from lowdim_sd.eval.paper_metrics import PAPER_METRICS

pytestmark = pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join(captured.out.split()), " ".join(captured.err.split())


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Two pictures drawn by `lowdim generate -m tinyfaces` (one step: only who drew them matters here)."""
    pytest.importorskip("lowdim_tinyfaces")
    folder = tmp_path_factory.mktemp("drawn") / "gen"
    code = main(["generate", "-m", "tinyfaces", "-p", "a photo of a [V] face", "--seed", "1", "--seed", "2",
                 "--steps", "1", "--device", "cpu", "-o", str(folder)])
    assert code == 0
    assert json.loads((folder / "prompts.json").read_text())["settings"]["model"] == "tinyfaces"
    return folder


@pytest.fixture
def reference(drawn, tmp_path):
    path = tmp_path / "ref.png"
    shutil.copy(sorted(drawn.glob("000-*.png"))[0], path)
    return path


def test_pictures_drawn_by_tinyfaces_are_scored_with_its_metrics_by_default(capsys, drawn, reference, tmp_path):
    out = tmp_path / "ev"
    code, stdout, stderr = run(capsys, "eval", drawn, "-r", reference, "--device", "cpu", "--out", out,
                               "--no-progress")
    assert code == 0, stdout + stderr
    scored = json.loads((out / "eval.json").read_text())["metrics"]
    assert sorted(scored) == sorted(TINYFACES_METRICS)
    assert all(scored[name]["mean"] is not None and scored[name]["misses"] == 0 for name in scored)
    assert (f"metrics: {','.join(TINYFACES_METRICS)} (those for tinyfaces, which prompts.json says drew these "
            "pictures; --metrics chooses others)") in stdout


def test_metrics_typed_win_and_a_metric_that_misses_every_picture_says_why(capsys, drawn, reference, tmp_path):
    code, stdout, stderr = run(capsys, "eval", drawn, "-r", reference, "--metrics", "face-rec", "--device", "cpu",
                               "--out", tmp_path / "ev", "--no-progress")
    assert code == 1 and "Traceback" not in stderr
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["metrics"].keys() == {"face-rec"}
    assert stderr.startswith("Error: no metric scored any of the 2 images (ran: face-rec)")
    assert f"score them with --metrics {','.join(TINYFACES_METRICS)}; prompts.json says tinyfaces drew them" in stderr


def test_a_metric_missing_every_picture_beside_one_that_scores_is_told_in_one_line(capsys, drawn, reference):
    code, stdout, stderr = run(capsys, "eval", drawn, "-r", reference, "--metrics", "face-rec,tinyfaces-image",
                               "--device", "cpu", "--no-progress")
    assert code == 0, stderr
    assert ("Face Rec found nothing to score in any of the 2 pictures: they are 32 px, drawn by tinyfaces "
            "(prompts.json), too small for it" in stdout)
    assert "score them with --metrics" not in stdout  # tinyfaces-image, one of its own, was asked for


@pytest.mark.parametrize("settings", [None, {"model": "sd15"}, {"model": 3}, {"model": "no-such-model-xyz"}])
def test_pictures_of_another_or_an_unrecorded_model_default_to_the_papers_metrics(
        capsys, monkeypatch, tmp_path, noise, settings):
    import lowdim_sd.eval.job

    asked = []

    def scored(job, progress=None):
        asked.append(job.metrics)
        raise SystemExit(0)

    monkeypatch.setattr(lowdim_sd.eval.job, "run_eval", scored)
    noise(0).save(tmp_path / "0.png")
    prompts = {"images": [{"image": "0.png", "prompt": "a sks face"}], **({"settings": settings} if settings else {})}
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path), "--no-progress"])
    assert asked == [tuple(PAPER_METRICS)]
