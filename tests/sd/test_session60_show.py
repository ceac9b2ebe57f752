"""``lowdim show`` of what session 59 left as an ``Error:`` (FHI): asking what a folder is is no mistake. A part of a
diffusers pipeline (``MODEL/unet``, or the weights diffusers reads in it) is said as its pipeline's, with the line
that uses the pipeline; a run's ``checkpoints`` folder says how many checkpoints it holds, the newest and the resume.
And a train-hypernet run's use line tries the network on a picture of an identity it held out, where one is on disk."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it

from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.hypertrain import train_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")


def _shown(capsys, path: Path, *flags: str) -> str:
    """``lowdim show PATH``'s table or JSON: exit 0, no Error line, no traceback."""
    capsys.readouterr()  # what a fixture's run printed before
    code = main(["show", str(path), *flags])
    out, err = capsys.readouterr()
    assert code == 0 and "Error" not in err and "Traceback" not in err, err
    return out


def _json(capsys, path: Path) -> dict:
    return json.loads(_shown(capsys, path, "--json"))


# ------------------------------------------------------------------------------------------- a pipeline's part


def test_the_tinyfaces_models_unet_folder_is_its_pipelines_part_with_the_pipelines_line(capsys):
    import lowdim_tinyfaces

    pipeline = Path(lowdim_tinyfaces.__file__).parent / "model"
    said = _json(capsys, pipeline / "unet")
    assert said["type"] == "pipeline_part" and said["problem"] is None
    assert said["kind"] == f"the unet part of the diffusers pipeline {pipeline}"
    assert said["fields"]["part"] == {"name": "unet", "class": "UNet2DConditionModel", "library": "diffusers"}
    assert said["fields"]["pipeline"]["folder"] == str(pipeline)
    weights = pipeline / "unet" / "diffusion_pytorch_model.safetensors"
    assert said["fields"]["weight_files"] == [{"file": weights.name, "bytes": weights.stat().st_size}]
    assert said["command"] == describe(pipeline).use  # what uses a part is its pipeline, named by its folder
    assert f"-m {shlex.quote(str(pipeline))} " in said["command"]
    table = " ".join(_shown(capsys, pipeline / "unet").split())
    assert "UNet2DConditionModel" in table and "diffusion_pytorch_model.safetensors" in table
    assert f"use it: {said['use']}" in table


@pytest.mark.parametrize(("part", "weights", "class_name"), [
    ("unet", "diffusion_pytorch_model.safetensors", "UNet2DConditionModel"),
    ("text_encoder", "model.safetensors", "CLIPTextModel")])
def test_a_parts_weights_are_said_to_be_that_parts_of_the_pipeline(tiny_sd, capsys, part, weights, class_name):
    said = _json(capsys, tiny_sd / part / weights)
    assert said["type"] == "pipeline_part", said["kind"]
    assert said["kind"] == f"the {part} weights of the diffusers pipeline {tiny_sd}"
    assert said["fields"]["part"]["class"] == class_name
    assert said["fields"]["tensors"]["count"] > 0  # still what any .safetensors file shows
    assert said["command"] == describe(tiny_sd).use


def test_a_file_diffusers_does_not_read_in_a_part_is_not_called_its_weights(tiny_sd, tmp_path, capsys):
    pipeline = shutil.copytree(tiny_sd, tmp_path / "pipe")
    shutil.copy(pipeline / "unet" / "diffusion_pytorch_model.safetensors", pipeline / "unet" / "backup.safetensors")
    assert _json(capsys, pipeline / "unet" / "backup.safetensors")["type"] == "unknown_safetensors"


def test_a_part_from_inside_it_and_of_a_pipeline_that_cannot_load(tiny_sd, tmp_path, capsys, monkeypatch):
    pipeline = shutil.copytree(tiny_sd, tmp_path / "pipe")
    monkeypatch.chdir(pipeline / "vae")
    assert _json(capsys, Path("."))["fields"]["pipeline"]["folder"] == str(pipeline)  # `cd model/vae; show .`
    (pipeline / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    said = _json(capsys, Path("."))
    assert said["problem"].startswith("its pipeline cannot be loaded: ") and "unet" in said["problem"]
    assert said["command"] == f"lowdim show {shlex.quote(str(pipeline))}"  # no line that would be refused


# ---------------------------------------------------------------------------- runs: checkpoints and held-out faces


@pytest.fixture(scope="module")
def hyper_run(weights):
    """A finished train-hypernet run of 3 steps (checkpoints at 2 and 3), its --out beside its weight folder."""
    out = weights.parent / "h"
    train_hypernet(job(weights, out), progress=False)
    return out


@pytest.fixture(scope="module")
def train_run(weights, tiny_sd):
    """A finished `lowdim train` run of 4 steps with checkpoints at 2 and 4."""
    out = weights.parent / "tr"
    face = sorted((weights.parent / "faces-w").glob("*.png"))[0]
    assert main(["train", "-m", str(tiny_sd), "-i", str(face), "--steps", "4", "--checkpoint-every", "2", "-o",
                 str(out), "--resolution", "16", "--device", "cpu"]) == 0
    return out


@pytest.mark.parametrize(("run", "command", "steps", "output"), [
    ("train_run", "train", [2, 4], "adapter.safetensors"),
    ("hyper_run", "train-hypernet", [2, 3], "hypernet.safetensors")])
def test_a_runs_checkpoints_folder_says_how_many_the_newest_and_the_resume(request, capsys, run, command, steps,
                                                                          output):
    out = request.getfixturevalue(run)
    said = _json(capsys, out / "checkpoints")
    assert said["type"] == "checkpoints_folder" and said["problem"] is None
    assert said["kind"] == (f"the checkpoints folder of a lowdim {command} run ({len(steps)} checkpoints, the newest "
                            f"at step {steps[-1]})")
    assert said["fields"]["checkpoints"] == {"count": len(steps), "steps": steps, "cut_short": 0}
    assert said["fields"]["newest"] == str(out / "checkpoints" / f"step-{steps[-1]:06d}")
    assert said["fields"]["run"] == {"finished": True, "wrote": [output]}
    assert said["command"] == f"lowdim {command} ... -o {shlex.quote(str(out))} --resume"
    table = " ".join(_shown(capsys, out / "checkpoints").split())
    assert f"{len(steps)} complete, at steps {steps[0]}, {steps[1]}" in table
    assert f"finished: wrote {output}" in table


def test_a_stopped_runs_checkpoints_folder_says_what_is_not_written_yet(train_run, tmp_path, capsys):
    out = shutil.copytree(train_run, tmp_path / "tr")
    (out / "adapter.safetensors").unlink()
    (out / "checkpoints" / "step-000004" / "state.json").unlink()  # a save cut short: step 2 is the newest
    said = _json(capsys, out / "checkpoints")
    assert said["fields"]["checkpoints"] == {"count": 1, "steps": [2], "cut_short": 1}
    assert said["fields"]["run"] == {"finished": False, "wrote": []}
    assert said["command"] == f"lowdim train ... -o {shlex.quote(str(out))} --resume"
    table = " ".join(_shown(capsys, out / "checkpoints").split())
    assert "stopped at step 2: adapter.safetensors not written yet" in table
    assert "1 save cut short" in table


def test_a_checkpoints_folder_of_saves_cut_short_alone_starts_over(train_run, tmp_path, capsys, monkeypatch):
    out = shutil.copytree(train_run, tmp_path / "tr")
    for state in (out / "checkpoints").glob("step-*/state.json"):
        state.unlink()
    monkeypatch.chdir(out / "checkpoints")  # and asked from inside it
    said = _json(capsys, Path("."))
    assert said["type"] == "checkpoints_folder"
    assert said["fields"]["checkpoint"]["resumes_at_step"] == 0
    assert said["command"] == f"lowdim train ... -o {shlex.quote(str(out))} --resume"


def _held_out_picture(run: Path, weights: Path) -> Path:
    """The first picture of split.json's held-out identity, as the weight folder's index records it."""
    held_out = json.loads((run / "split.json").read_text())["val"]
    index = json.loads((weights / "index.json").read_text())
    entry = next(entry for entry in index["identities"] if entry["name"] == held_out[0])
    return Path(index["root"]) / entry["images"][0]


def test_a_hypernet_runs_use_line_tries_a_picture_it_held_out(hyper_run, weights, capsys):
    picture = _held_out_picture(hyper_run, weights)
    split = json.loads((hyper_run / "split.json").read_text())
    assert picture.is_file() and picture.stem not in split["train"]  # a face the network never trained on
    for path in (hyper_run, hyper_run / "hypernet.safetensors"):
        use = describe(path).use
        assert use.endswith(f" -i {shlex.quote(str(picture))} -o me"), use
    assert f"-i {shlex.quote(str(picture))}" in " ".join(_shown(capsys, hyper_run).split())
    # a checkpoint's network is no run's --out: no split.json beside it
    assert describe(hyper_run / "checkpoints" / "step-000003" / "hypernet.safetensors").use.endswith(
        " -i face.jpg -o me")


def test_without_the_held_out_picture_on_disk_the_use_line_keeps_face_jpg(hyper_run, weights, tmp_path):
    copied = Path(shutil.copytree(hyper_run, tmp_path / "h"))  # no weight folder named w beside it
    assert describe(copied).use.endswith(" -i face.jpg -o me")
    data = tmp_path / "data"  # the run, its weight folder and its pictures moved together
    for name in ("h", "w", "faces-w"):
        shutil.copytree(weights.parent / name, data / name)
    index = json.loads((data / "w" / "index.json").read_text())
    (data / "w" / "index.json").write_text(json.dumps({**index, "root": str(data / "faces-w")}))
    picture = _held_out_picture(data / "h", data / "w")
    assert picture.parent == data / "faces-w"
    assert describe(data / "h").use.endswith(f" -i {shlex.quote(str(picture))} -o me")
    picture.rename(picture.with_suffix(".gone"))
    assert describe(data / "h").use.endswith(" -i face.jpg -o me")
