"""``lowdim ui`` refuses the model a load would refuse before diffusers reads it (another pipeline, a missing part,
a folder with no model_index.json, a FIFO), in the load's own line: at start (``lowdim ui -m``, ``serve``),
in the crop preview before the photo is looked at, and wherever the page checks its Model box (review BE1-BE3).
A job's path field and ``serve(out=...)`` take ``~`` as the home folder, as the CLI does (review BE4)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from local_port import free_port  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.loading import load_sd
from lowdim_sd.ui.checks import check_model

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


def copy_with(tiny_sd: Path, folder: Path, pipeline: str | None = None, drop: str | None = None) -> Path:
    """A copy of the tiny pipeline saved as ``pipeline``, or without its ``drop`` folder."""
    shutil.copytree(tiny_sd, folder)
    if pipeline is not None:
        index = folder / "model_index.json"
        index.write_text(json.dumps({**json.loads(index.read_text()), "_class_name": pipeline}))
    if drop is not None:
        shutil.rmtree(folder / drop)
    return folder


@pytest.fixture(scope="module")
def refused(tiny_sd, tmp_path_factory) -> dict[str, Path]:
    """Folders and a FIFO that every load refuses before diffusers reads a weight."""
    where = tmp_path_factory.mktemp("refused")
    os.mkfifo(where / "fifo")
    return {
        "sdxl": copy_with(tiny_sd, where / "sdxl", pipeline="StableDiffusionXLPipeline"),
        "inpaint": copy_with(tiny_sd, where / "inpaint", pipeline="StableDiffusionInpaintPipeline"),
        "no tokenizer": copy_with(tiny_sd, where / "notok", drop="tokenizer"),
        "a part alone": tiny_sd / "unet",
        "fifo": where / "fifo",
    }


def load_line(model: Path) -> str:
    with pytest.raises(LowdimError) as caught:
        load_sd(str(model), "cpu", "fp32")
    return str(caught.value)


@pytest.mark.parametrize("kind", ["sdxl", "inpaint", "no tokenizer", "a part alone", "fifo"])
def test_the_model_box_says_what_the_load_would(refused, kind):
    with pytest.raises(LowdimError) as caught:
        check_model(str(refused[kind]))
    assert str(caught.value) == load_line(refused[kind])


def test_the_lines_name_the_folder_and_what_it_is(refused):
    assert load_line(refused["sdxl"]) == (f"{refused['sdxl']}: an SDXL pipeline (StableDiffusionXLPipeline); "
                                          f"lowdim's SD backend takes SD1.x models (StableDiffusionPipeline)")
    assert load_line(refused["fifo"]) == f"{refused['fifo']}: not a regular file (a FIFO); give a file or a folder"


def test_a_fifo_with_a_hub_id_s_shape_is_named_too(refused, monkeypatch):
    """``fifo`` in the current folder looks like a hub id: the load names what it is, not the hub's answer."""
    monkeypatch.chdir(refused["fifo"].parent)
    assert load_line(Path("fifo")) == "fifo: not a regular file (a FIFO); give a file or a folder"


def test_a_good_folder_and_a_tilde_path_still_pass(tiny_sd, monkeypatch):
    assert check_model(str(tiny_sd)) == str(tiny_sd)
    monkeypatch.setenv("HOME", str(tiny_sd.parent))
    assert check_model(f"~/{tiny_sd.name}") == f"~/{tiny_sd.name}"


@pytest.mark.parametrize("crop", [False, True])
def test_the_crop_preview_refuses_the_model_before_the_photo(refused, crop):
    from lowdim_sd.ui.photos import crop_preview

    with pytest.raises(LowdimError) as caught:
        crop_preview(FACE, str(refused["sdxl"]), crop=crop)
    assert str(caught.value) == load_line(refused["sdxl"])


def test_serve_refuses_the_folder_before_it_serves(refused, tmp_path):
    pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
    from lowdim_cli.ui_command import serve

    served = []
    with pytest.raises(LowdimError) as caught:
        serve("127.0.0.1", free_port(), str(refused["no tokenizer"]), tmp_path / "runs", False, None, "auto", "auto",
              ready=served.append)
    assert str(caught.value) == load_line(refused["no tokenizer"]) and served == []


def test_lowdim_ui_exits_1_with_the_line(refused, tmp_path, capsys, monkeypatch):
    pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
    from lowdim_cli import ui_command
    from lowdim_cli.main import main

    served = []  # a server started by mistake returns at once rather than serving until Ctrl-C
    monkeypatch.setattr(ui_command, "_serve_until_stopped", lambda *args: served.append(args))

    code = main(["ui", "-m", str(refused["sdxl"]), "--out", str(tmp_path / "runs"), "--port", str(free_port())])
    assert code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{refused['sdxl']}: an SDXL pipeline (StableDiffusionXLPipeline)" in err
    assert served == [] and not (tmp_path / "runs").exists()


def test_a_job_s_path_field_takes_tilde_as_the_home_folder(tmp_path, monkeypatch):
    from lowdim_sd.train_settings import as_path
    from lowdim_sd.ui.studio import StudioConfig
    from lowdim_sd.workflows import TrainJob

    monkeypatch.setenv("HOME", str(tmp_path))
    assert as_path("~/x", "TrainJob", "out") == tmp_path / "x"
    assert TrainJob(model="tinyfaces", out="~/x").out == tmp_path / "x"
    assert StudioConfig(out="~/runs").out == tmp_path / "runs"
    assert as_path("a~/x", "TrainJob", "out") == Path("a~/x")  # only a leading ~ is the home folder


def test_serve_with_out_under_tilde_keeps_runs_in_the_home_folder(tmp_path, monkeypatch, capsys):
    pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
    from lowdim_cli.ui_command import serve

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    serve("127.0.0.1", free_port(), "tinyfaces", "~/pyruns", False, None, "auto", "auto", ready=lambda page: None)
    assert not (tmp_path / "~").exists()
    assert f"runs are kept in {tmp_path / 'home' / 'pyruns'}" in capsys.readouterr().out


def test_evaluate_says_why_nothing_scored_and_what_the_page_can_do(tmp_path):
    """32 px pictures scored with the paper's face-rec: every one a miss. The page leads with eval's line and its
    fix in the page's terms, above the report whose notes say why (review BE6)."""
    from PIL import Image

    from lowdim_sd.ui.studio import Studio, StudioConfig

    pictures = []
    for number in range(2):
        pictures.append(tmp_path / f"{number:02d}.png")
        Image.new("RGB", (32, 32), (40 * number, 90, 120)).save(pictures[-1])
    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    report = studio.evaluate(pictures, FACE, "a photo of a [V] face", "sks", "face-rec")
    first = report.strip().splitlines()[0]
    assert "no metric scored any of the 2 images (ran: face-rec); the notes below say why" in first
    assert first.rstrip("*").endswith("score them with the Metrics box set to "
                                      "tinyfaces-identity,tinyfaces-style,tinyfaces-image")
    assert "--" not in first and "Face Rec" in report
