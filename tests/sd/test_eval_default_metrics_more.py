"""``lowdim eval``'s default metrics and its all-misses lines, beyond tests/eval/test_eval_model_metrics.py: a metric
made for 32 px pictures is never told they are too small (its misses come from elsewhere, a missing reference), and
pictures a merged TinyFaces model drew are scored with TinyFaces' metrics, the base model its merge record names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lowdim_cli.main import main
from lowdim_sd.eval.job import TINYFACES_METRICS
from lowdim_sd.eval.paper_metrics import PAPER_METRICS

pytestmark = pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")
TINY = ",".join(TINYFACES_METRICS)


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join(captured.out.split()), " ".join(captured.err.split())


def generate(model: str, out: Path) -> None:
    code = main(["generate", "-m", model, "-p", "a photo of a [V] face", "--seed", "1", "--seed", "2",
                 "--steps", "1", "--device", "cpu", "-o", str(out)])
    assert code == 0


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> Path:
    """Two 32 px pictures `lowdim generate -m tinyfaces` drew; its prompts.json names no reference."""
    pytest.importorskip("lowdim_tinyfaces")
    folder = tmp_path_factory.mktemp("drawn") / "gen"
    generate("tinyfaces", folder)
    return folder


def test_tinyfaces_own_metrics_missing_for_want_of_a_reference_are_not_blamed_on_the_size(capsys, drawn):
    code, stdout, stderr = run(capsys, "eval", drawn, "--device", "cpu", "--no-progress")
    assert code == 0, stdout + stderr  # the style metric reads them without a reference
    assert "have no usable reference image" in stdout  # the note that says why
    assert "too small" not in stdout
    for column in ("Identity", "Image sim"):
        assert f"{column} found nothing to score in any of the 2 pictures; the notes above say why" in stdout


def test_the_papers_metrics_on_32_px_pictures_are_still_told_they_are_too_small(capsys, drawn, tmp_path):
    reference = tmp_path / "ref.png"  # a copy: a picture scored is never its own reference
    shutil.copy(sorted(drawn.glob("*.png"))[0], reference)
    code, stdout, stderr = run(capsys, "eval", drawn, "--metrics", "face-rec,tinyfaces-identity", "--device", "cpu",
                               "--no-progress", "-r", reference)
    assert code == 0, stderr
    assert ("Face Rec found nothing to score in any of the 2 pictures: they are 32 px, drawn by tinyfaces "
            "(prompts.json), too small for it") in stdout
    assert "Identity found nothing" not in stdout


@pytest.fixture(scope="module")
def merged_file(tiny_faces_adapter, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("merged") / "merged.safetensors"
    assert main(["merge", "-m", "tinyfaces", "-a", str(tiny_faces_adapter), "-o", str(out)]) == 0
    return out


def test_pictures_of_a_merged_tinyfaces_file_are_scored_with_tinyfaces_metrics(capsys, merged_file, monkeypatch,
                                                                                tmp_path):
    monkeypatch.chdir(merged_file.parent)  # as the review ran it: -m merged.safetensors, recorded by its absolute path
    generate("merged.safetensors", tmp_path / "g4")
    reference = tmp_path / "ref.png"
    shutil.copy(sorted((tmp_path / "g4").glob("*.png"))[0], reference)
    code, stdout, stderr = run(capsys, "eval", tmp_path / "g4", "-r", reference, "--device", "cpu", "--no-progress",
                               "--out", tmp_path / "ev")
    assert code == 0, stdout + stderr
    assert sorted(json.loads((tmp_path / "ev" / "eval.json").read_text())["metrics"]) == sorted(TINYFACES_METRICS)
    assert (f"metrics: {TINY} (those for {merged_file.resolve()}, which prompts.json says drew these pictures: "
            f"a merge of tinyfaces, its record says; --metrics chooses others)") in stdout


def asked_metrics(monkeypatch, tmp_path: Path, model: str) -> tuple[str, ...]:
    """The metrics eval would score a folder with, whose prompts.json says ``model`` drew it; nothing is scored,
    and no model is loaded (the merge is known by its record alone)."""
    import lowdim_sd.eval.job

    asked = []

    def scored(job, progress=None):
        asked.append(job.metrics)
        raise SystemExit(0)

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded to choose the metrics")

    monkeypatch.setattr(lowdim_sd.eval.job, "run_eval", scored)
    monkeypatch.setattr("lowdim_sd.loading.load_sd", refuse)
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(folder / "0.png")
    prompts = {"images": [{"image": "0.png", "prompt": "a sks face"}], "settings": {"model": model}}
    (folder / "prompts.json").write_text(json.dumps(prompts))
    with pytest.raises(SystemExit):
        main(["eval", str(folder), "--no-progress"])
    return asked[0]


def test_pictures_of_a_merged_tinyfaces_folder_are_scored_with_tinyfaces_metrics(tiny_faces_adapter, monkeypatch,
                                                                                  tmp_path, capsys):
    out = tmp_path / "merged-dir"
    assert main(["merge", "-m", "tinyfaces", "-a", str(tiny_faces_adapter), "-o", str(out),
                 "--format", "diffusers"]) == 0
    assert asked_metrics(monkeypatch, tmp_path, str(out)) == TINYFACES_METRICS
    assert "a merge of tinyfaces, its record says" in " ".join(capsys.readouterr().out.split())


def test_a_merge_of_another_model_and_a_plain_safetensors_keep_the_papers_metrics(monkeypatch, tmp_path):
    import torch
    from safetensors.torch import save_file

    from lowdim_sd.merged_model import LDM_MARK, RECORD_KEY

    other = tmp_path / "other.safetensors"  # a merge of a model without metrics of its own
    save_file({"x": torch.zeros(1)}, str(other), metadata={**LDM_MARK, RECORD_KEY: json.dumps({"base_model": "sd15"})})
    plain = tmp_path / "plain.safetensors"  # any other checkpoint: no record to follow
    save_file({"x": torch.zeros(1)}, str(plain))
    assert asked_metrics(monkeypatch, tmp_path / "a", str(other)) == tuple(PAPER_METRICS)
    assert asked_metrics(monkeypatch, tmp_path / "b", str(plain)) == tuple(PAPER_METRICS)
