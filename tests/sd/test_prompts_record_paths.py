"""prompts.json records a local model and each adapter file by its absolute path (``~`` expanded, links followed),
so the record means the same file from any folder: `lowdim eval` run elsewhere still follows a merged model given
by a relative path to its base's metrics, and one adapter typed two ways into one -o is not "other settings". A
registered name and a hub id stay as typed (review FGE)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lowdim
from lowdim_cli.main import main
from lowdim_sd.drawing_record import drawing_record
from lowdim_sd.eval.job import TINYFACES_METRICS
from lowdim_sd.generate import GenerateConfig
from lowdim_sd.loading import SDModel, load_sd

pytestmark = pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")


def _metrics_eval_picks(monkeypatch, folder: Path) -> tuple[str, ...]:
    """The metrics `lowdim eval FOLDER` would score with, by default; nothing is scored."""
    import lowdim_sd.eval.job

    asked = []

    def scored(job, progress=None):
        asked.append(job.metrics)
        raise SystemExit(0)

    monkeypatch.setattr(lowdim_sd.eval.job, "run_eval", scored)
    with pytest.raises(SystemExit):
        main(["eval", str(folder), "--no-progress"])
    return asked[0]


@pytest.mark.parametrize(("fmt", "typed"), [("single-file", "merged.safetensors"), ("diffusers", "merged/")])
def test_eval_from_another_folder_follows_a_merged_model_given_by_a_relative_path(
        tiny_faces_adapter, tmp_path, monkeypatch, capsys, fmt, typed):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    assert main(["merge", "-m", "tinyfaces", "-a", str(tiny_faces_adapter), "-o", typed.rstrip("/"),
                 "--format", fmt]) == 0
    assert main(["generate", "-m", typed, "-p", "a photo of a [V] face", "--steps", "1", "--device", "cpu",
                 "-o", "out"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert _metrics_eval_picks(monkeypatch, project / "out") == TINYFACES_METRICS
    assert "a merge of tinyfaces, its record says" in " ".join(capsys.readouterr().out.split())
    recorded = json.loads((project / "out" / "prompts.json").read_text(encoding="utf-8"))["settings"]["model"]
    assert recorded == str((project / typed).resolve())


def test_an_older_record_with_a_relative_model_is_still_followed_from_the_folder_it_was_drawn_in(
        tiny_faces_adapter, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["merge", "-m", "tinyfaces", "-a", str(tiny_faces_adapter), "-o", "merged.safetensors"]) == 0
    from PIL import Image

    (tmp_path / "old").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "old" / "0.png")
    old = {"images": [{"image": "0.png", "prompt": "a sks face"}], "settings": {"model": "merged.safetensors"}}
    (tmp_path / "old" / "prompts.json").write_text(json.dumps(old), encoding="utf-8")
    assert _metrics_eval_picks(monkeypatch, tmp_path / "old") == TINYFACES_METRICS


@pytest.fixture(scope="module")
def sks_adapter(tiny_sd, tmp_path_factory) -> Path:
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=0)
    folder = tmp_path_factory.mktemp("spellings")
    (folder / "me").mkdir()
    (folder / "link").symlink_to(folder / "me")
    return lowdim.save_adapter(folder / "me" / "a.safetensors", model.modules, token="sks")


def _draw(tiny_sd: Path, adapter: str, out: Path, capsys) -> str:
    capsys.readouterr()
    code = main(["generate", "-m", str(tiny_sd), "-a", adapter, "-p", "a [V] face", "--steps", "1", "--resolution",
                 "16", "--device", "cpu", "--dtype", "fp32", "-o", str(out)])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 0, said
    return said


def test_one_adapter_typed_several_ways_into_one_folder_is_not_other_settings(
        tiny_sd, sks_adapter, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(sks_adapter.parent.parent)
    out = tmp_path / "out"
    for typed in ("./me/a.safetensors", "me/a.safetensors", "link/a.safetensors", str(sks_adapter)):
        assert "other settings" not in _draw(tiny_sd, typed, out, capsys), typed
    record = json.loads((out / "prompts.json").read_text(encoding="utf-8"))["settings"]
    assert record["adapters"][0]["file"] == str(sks_adapter.resolve())
    # another scale of the same file still is
    assert "other settings" in _draw(tiny_sd, "me/a.safetensors:0.5", out, capsys)


def test_an_older_record_of_the_adapter_by_a_relative_path_is_the_same_file(
        tiny_sd, sks_adapter, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(sks_adapter.parent.parent)
    out = tmp_path / "out"
    _draw(tiny_sd, "me/a.safetensors", out, capsys)
    record = json.loads((out / "prompts.json").read_text(encoding="utf-8"))
    record["settings"]["adapters"][0]["file"] = "./me/a.safetensors"  # as lowdim recorded it before
    (out / "prompts.json").write_text(json.dumps(record), encoding="utf-8")
    assert "other settings" not in _draw(tiny_sd, "me/a.safetensors", out, capsys)


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sd):
    return load_sd(str(tiny_sd), device="cpu", dtype="fp32").pipe


def _recorded_model(pipe, name: str) -> str:
    return drawing_record(SDModel.from_pipeline(pipe, name=name), GenerateConfig(prompts=["a face"]))["model"]


def test_a_model_folder_given_relative_or_with_a_tilde_is_recorded_absolute(tiny_pipe, tiny_sd, monkeypatch):
    monkeypatch.chdir(Path(tiny_sd).parent)
    assert _recorded_model(tiny_pipe, Path(tiny_sd).name) == str(Path(tiny_sd).resolve())
    monkeypatch.setenv("HOME", str(Path(tiny_sd).parent))
    assert _recorded_model(tiny_pipe, f"~/{Path(tiny_sd).name}") == str(Path(tiny_sd).resolve())


def test_a_hub_id_and_a_registered_name_stay_as_typed(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _recorded_model(tiny_pipe, "someone/some-model") == "someone/some-model"  # no such folder here
    pytest.importorskip("lowdim_tinyfaces")
    (tmp_path / "tinyfaces").mkdir()  # a folder of the name: the registered model is still the one loaded
    assert _recorded_model(tiny_pipe, "tinyfaces") == "tinyfaces"
