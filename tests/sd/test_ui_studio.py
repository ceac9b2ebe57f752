"""``lowdim ui`` without a browser: the Studio's runs, its one job slot, and every bad input's one line."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from ui_requests import png_header  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd import runs
from lowdim_sd.ui.checks import check_model
from lowdim_sd.ui.photos import check_photo, crop_preview
from lowdim_sd.ui.run_folders import EXPORTS, clean_partials, list_runs, read_run
from lowdim_sd.ui.studio import Busy, RunSettings, Studio, StudioConfig


@pytest.fixture
def studio(tmp_path, tiny_sd) -> Studio:
    return Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui"))


def settings(tiny_sd, **kwargs) -> RunSettings:
    return RunSettings(model=str(tiny_sd), **{"steps": 2, "crop": False, "preview_steps": 1, **kwargs})



def test_a_run_appears_complete_in_its_own_folder_and_reopens(studio, tiny_sd, face):
    heard = []
    record = studio.personalize(face, settings(tiny_sd), lambda *event: heard.append(event))
    assert list_runs(studio.config.out) == [record.name] and record.folder.is_dir()
    assert {"load model", "fast finetune", "export", "preview"} <= set(record.stages)
    assert [label for label, done, _ in heard if done == 0] == list(record.stages)
    assert set(record.downloads) == {"lowdim adapter", *EXPORTS.values(), "preview"}
    assert all(path.is_file() and path.parent.parent == record.folder for path in record.downloads.values())
    assert record.gallery[0][1] == "reference" and all(path.is_file() for path, _ in record.gallery)
    assert (record.folder / "photo.png").is_file() and not (record.folder / runs.LOCK).exists()
    again = read_run(studio.config.out, record.name)
    assert (again.gallery, again.downloads, again.stages) == (record.gallery, record.downloads, record.stages)
    second = studio.personalize(face, settings(tiny_sd, seed=1))
    assert second.name != record.name and list_runs(studio.config.out) == sorted([record.name, second.name])[::-1]


def test_a_preview_the_gpu_had_no_memory_for_is_a_note_on_the_run_not_an_empty_silence(studio, tiny_sd, face,
                                                                                         monkeypatch):
    from lowdim_sd.ui.page import stage_table

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr("lowdim_sd.generate.generate", no_memory)
    record = studio.personalize(face, settings(tiny_sd))
    assert record.gallery == [] and record.downloads["lowdim adapter"].is_file()
    assert len(record.notes) == 1 and record.notes[0].startswith("no preview: out of GPU memory")
    assert read_run(studio.config.out, record.name).notes == record.notes
    assert "no preview: out of GPU memory" in stage_table(record)
    monkeypatch.undo()
    plain = studio.personalize(face, settings(tiny_sd))
    assert plain.notes == [] and "Note" not in stage_table(plain)


def test_a_failed_run_leaves_no_folder_and_frees_the_slot(studio, tiny_sd, face, monkeypatch):
    import lowdim_sd.personalize as personalize_module

    def fails_while_writing(job, progress=True):
        job.out.mkdir(parents=True, exist_ok=True)  # the run claimed its folder by making it
        (job.out / "adapter.safetensors").write_bytes(b"half")
        raise LowdimError("the disk is full")

    monkeypatch.setattr(personalize_module, "personalize", fails_while_writing)
    with pytest.raises(LowdimError, match="disk is full"):
        studio.personalize(face, settings(tiny_sd))
    assert list(studio.config.out.iterdir()) == []
    monkeypatch.undo()
    assert studio.personalize(face, settings(tiny_sd)).folder.is_dir()  # the slot was released


def test_a_second_job_is_refused_at_once_while_one_runs(studio, tiny_sd, face):
    started, finish = threading.Event(), threading.Event()

    def hold():
        with studio.job("personalization"):
            started.set()
            finish.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert started.wait(10)
        with pytest.raises(Busy, match="a personalization is already running.*one job runs at a time"):
            studio.personalize(face, settings(tiny_sd))
        with pytest.raises(Busy):
            studio.evaluate([face], face, "a [V] face")
    finally:
        finish.set()
        holder.join()
    assert list_runs(studio.config.out) == []


def test_leftovers_of_a_killed_server_go_but_a_live_runs_folder_stays(tmp_path):
    out = tmp_path / "ui"
    dead, live = out / ".old.partial", out / ".now.partial"
    dead.mkdir(parents=True)
    live.mkdir()
    (dead / runs.LOCK).write_text(json.dumps({"pid": 2**22 + 12345, "host": "x"}))
    (dead / runs.LOCK).write_text(json.dumps({**json.loads((dead / runs.LOCK).read_text()),
                                              "host": __import__("socket").gethostname()}))
    runs.acquire_lock(live)
    assert clean_partials(out) == [dead]
    assert live.is_dir() and not dead.exists()


def test_photos_that_are_not_images_or_too_large_are_one_line_naming_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(LowdimError, match="notes.png is not an image") as caught:
        check_photo(text)
    assert "\n" not in str(caught.value)
    huge = png_header(tmp_path / "huge.png", 9000, 6000)
    with pytest.raises(LowdimError, match=r"huge.png is 9000x6000 pixels \(54 MP\); photos up to 50 MP"):
        check_photo(huge)
    Image.new("RGB", (6000, 6000), (90, 120, 150)).save(tmp_path / "ok.jpg")  # its data whole: it is decoded
    assert check_photo(tmp_path / "ok.jpg").name == "ok.jpg"  # 36 MP: accepted


def test_the_crop_preview_says_what_the_model_will_learn(tmp_path, tiny_sd, face):
    pytest.importorskip("skimage")
    from skimage import data

    from lowdim_sd.face_models import faces_available

    kept = crop_preview(face, str(tiny_sd), crop=False)
    assert kept.faces == 0 and "as it is" in kept.message and kept.image.size == (256, 256)
    if not faces_available():
        pytest.skip("the faces extra is not installed")
    with pytest.raises(LowdimError, match=r"no face found in face_000\.png") as caught:
        crop_preview(face, str(tiny_sd), crop=True)
    # A CLI flag, or the Python parameter, neither of which the page has a control for
    assert "--no-crop" not in str(caught.value) and "crop=False" not in str(caught.value)
    astronaut = data.astronaut()
    Image.fromarray(np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)).save(tmp_path / "two.png")
    both = crop_preview(tmp_path / "two.png", str(tiny_sd))
    assert both.faces == 2 and "2 faces found: showing face 0" in both.message
    other = crop_preview(tmp_path / "two.png", str(tiny_sd), face_index=1)
    assert np.abs(np.asarray(other.image, float) - np.asarray(both.image, float)).mean() > 1


def test_an_unknown_model_is_named(tmp_path, tiny_sd):
    assert check_model(str(tiny_sd)) == str(tiny_sd) and check_model("tinyfaces") == "tinyfaces"
    assert check_model("runwayml/stable-diffusion-v1-5") == "runwayml/stable-diffusion-v1-5"
    with pytest.raises(LowdimError, match=r"model '.*nowhere' is neither an installed model \(.*tinyfaces"):
        check_model(str(tmp_path / "nowhere"))


def test_scoring_dropped_pictures_gives_the_eval_table(studio, tmp_path):
    pytest.importorskip("skimage")
    from skimage import data

    from lowdim_sd.face_models import faces_available

    if not faces_available():
        pytest.skip("the faces extra is not installed")
    Image.fromarray(data.astronaut()).save(tmp_path / "me.png")
    table = studio.evaluate([tmp_path / "me.png", tmp_path / "me.png"], tmp_path / "me.png", "a photo of [V]",
                            metrics="face-rec")
    assert "| mean |" in table and "| scored | 2 |" in table
    with pytest.raises(LowdimError, match="drop at least one generated picture"):
        studio.evaluate([], tmp_path / "me.png", "a [V]")


def test_the_command_refuses_a_taken_port_an_unknown_model_or_no_gradio_in_one_line(tmp_path, capsys,
                                                                                    monkeypatch):
    import builtins
    import socket

    from lowdim_cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["ui", "--port", str(port), "--out", str(tmp_path / "ui")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and f"port {port} on 127.0.0.1 is already in use" in err[0]
    code = main(["ui", "--model", str(tmp_path / "missing-model"), "--port", str(port)])  # named before the port
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "missing-model' is neither an installed model" in err[0]
    code = main(["ui", "--device", "cpu", "--dtype", "fp16", "--port", str(port)])  # named before the port too
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--dtype fp16 on a CPU" in err[0]
    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio":
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    code = main(["ui"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "pip install 'lowdim[ui]'" in err[0]
    assert not (tmp_path / "ui").exists()  # nothing was created for a server that never started


def test_a_lowdim_error_on_the_page_is_its_first_line_and_others_are_named_unexpected(capsys):
    gr = pytest.importorskip("gradio")
    from lowdim_sd.ui.page_parts import on_page

    @on_page
    def mistaken():
        raise LowdimError("photo.png is not an image\n(details)")

    @on_page
    def broken():
        raise ZeroDivisionError("division by zero")

    with pytest.raises(gr.Error) as caught:
        mistaken()
    assert caught.value.message == "photo.png is not an image"
    with pytest.raises(gr.Error) as caught:
        broken()
    assert caught.value.message == "unexpected error: division by zero (details in the terminal)"
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_each_how_to_draw_choice_is_a_draw_the_parser_reads_and_the_choices_differ():
    pytest.importorskip("gradio")
    from lowdim_sd.draw_parts import every_style_parts, parse_draw, suggested_parts
    from lowdim_sd.ui.page_draw import DRAW_CHOICES

    draws = [parse_draw(text) for _, text in DRAW_CHOICES]
    assert len(set(draws)) == len(draws) == len({label for label, _ in DRAW_CHOICES})
    assert (1.0, suggested_parts(keep_styles=0.0)) in draws  # what personalize's `draw it:` line suggests
    assert any(parts.cross_attention_scale < 1.0 for _, parts in draws)
    assert (1.0, every_style_parts(keep_styles=0.0)) in draws  # the trade personalize prints beside it


def test_the_crop_preview_checks_the_model_as_personalize_does(face):
    with pytest.raises(LowdimError, match="model 'nonsense' is neither an installed model"):
        crop_preview(face, "nonsense")


def test_out_of_range_seeds_and_a_damaged_run_record_are_one_line(studio, tiny_sd, face):
    with pytest.raises(LowdimError, match=r"Run seed must be 0 to 9223372036854775807, got 1844"):
        studio.personalize(face, settings(tiny_sd, seed=2**64))
    record = studio.personalize(face, settings(tiny_sd))
    (record.folder / "run.json").write_text('{"settings": {}, "stag')
    with pytest.raises(LowdimError, match=rf"run '{record.name}' in .*: its run.json is damaged \(JSONDecodeError\)"):
        read_run(studio.config.out, record.name)
    assert record.name not in list_runs(studio.config.out)


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("mine")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(LowdimError, match="--out"):
            Studio(StudioConfig(out=out))
    assert (tmp_path / "afile").read_text() == "mine"


def test_an_emptied_number_field_is_one_line_on_the_page():
    pytest.importorskip("gradio")
    from lowdim_sd.ui.page_parts import whole

    assert whole(3.0, "Seed") == 3
    with pytest.raises(LowdimError, match="Seed is empty: type a whole number"):
        whole(None, "Seed")


def test_studio_config_takes_a_str_folder_as_every_job_does(tmp_path, tiny_sd):
    studio = Studio(StudioConfig(model=str(tiny_sd), out=str(tmp_path / "ui")))
    assert studio.config.out == tmp_path / "ui" and (tmp_path / "ui").is_dir()
    with pytest.raises(LowdimError, match=r"StudioConfig: out= takes a path \(a str or Path\), got a int"):
        StudioConfig(out=3)
