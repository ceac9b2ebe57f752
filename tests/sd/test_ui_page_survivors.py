"""What review DN's mutation audit of the page's handlers found unpinned: the seeds, scale and checkbox a client
sends, Draw's pictures after a failed or stopped draw, the Evaluate tab's names and metrics, the photo's own lines
and the upload folder's setting. Each test fails on the mutant its docstring names; none needs a model or a
server. Two lines were tracebacks at the audit (a huge whole number as a scale, a folder as a photo)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from lowdim.errors import LowdimError
from lowdim.file_loading import FORMAT
from lowdim_sd.ui import checks, page_draw, page_handlers, photos, scoring, upload_folder

pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

UNREADABLE = "is not an image this page can read (the file is damaged); use a JPEG, PNG or WebP photo"


def _run_asked(**changed: object) -> tuple:
    """Personalize's controls as a client sends them (photo, model, hypernetwork, steps, rank, seed, gallery
    steps, face), with ``changed`` over the page's own values."""
    sent = {"path": "face.png", "chosen_model": "tinyfaces", "hyper": False, "step_count": None, "lora_rank": 4,
            "run_seed": 0, "sample_steps": 10, "index": None, **changed}
    return page_handlers.asked_run(**sent)  # type: ignore[arg-type]


# --- numbers a client sends -------------------------------------------------------------------------------------

def test_pictures_whose_last_seed_is_the_largest_seed_are_drawn():
    """seed-room-off-by-one: 2 pictures from MAX_SEED - 1 use seeds up to MAX_SEED itself, which fits."""
    assert checks.check_seed(checks.MAX_SEED - 1, count=2) == checks.MAX_SEED - 1
    with pytest.raises(LowdimError, match=f"at most {checks.MAX_SEED - 1}$"):
        checks.check_seed(checks.MAX_SEED, count=2)


@pytest.mark.parametrize("sent", [math.inf, -math.inf, math.nan, "inf", "nan"])
def test_an_infinite_or_nan_adapter_scale_is_one_line(sent):
    """real-no-finite: a scale that is no finite number is refused where Draw reads it, naming the control."""
    with pytest.raises(LowdimError, match=r"^Adapter scale must be a number, got (-?inf|nan)$"):
        checks.real_number(sent, "Adapter scale")


@pytest.mark.parametrize("sent", [10**400, "1" + "0" * 400], ids=["int", "text"])
def test_a_whole_number_too_large_for_a_scale_is_one_line_cut_short(sent):
    """Defect 1 of the audit: an int past a float's range overflowed (a traceback, "unexpected error" on the
    page). It is the control's own line, the 401 digits cut short."""
    with pytest.raises(LowdimError) as caught:
        checks.real_number(sent, "Adapter scale")
    line = str(caught.value)
    assert line.startswith("Adapter scale must be a number, got 1000") and "…" in line and len(line) < 160


def test_a_client_s_no_for_the_hypernetwork_is_one_line_not_a_tick():
    """run-hyper-truthy: the text "no" would have ticked the hypernetwork (any non-empty text is true)."""
    with pytest.raises(LowdimError, match="is a checkbox"):
        _run_asked(hyper="no")
    assert _run_asked(hyper=True)[1].use_hypernet is True


def test_an_emptied_photo_box_asks_for_a_photo():
    """run-no-photo-none-only: a client's "" for the photo is "drop a face photo first", as None is."""
    for empty in ("", None):
        with pytest.raises(LowdimError, match="^drop a face photo first$"):
            _run_asked(path=empty)


# --- the page's words ------------------------------------------------------------------------------------------

def test_clip_advice_names_only_the_clip_metrics_asked_for():
    """clip-advice-all: with only clip-t asked for, the advice says to take out clip-t, not clip-i as well."""
    said = checks.clip_advice("no CLIP model here" + checks.CLIP_ADVICE, ["clip-t", "dino"])
    assert said == "no CLIP model here, or take clip-t out of the Metrics box"


def test_a_line_naming_a_cli_flag_is_said_in_the_page_s_words():
    """page-patterns-skipped: the CLI's `--batch` advice becomes Draw's Pictures control."""
    said = checks.in_page_terms("too many (`lowdim generate --batch 3` starts there)")
    assert said == "too many (in Draw below, 3 Pictures or fewer fit one call)"


# --- Earlier runs and Draw -------------------------------------------------------------------------------------

def test_earlier_runs_lists_no_hidden_folder(tmp_path):
    """folder-names-hidden: a run still being written (.NAME.partial) is no run to open."""
    (tmp_path / ".run.partial").mkdir()
    (tmp_path / "run").mkdir()
    assert page_handlers.run_folder_names(tmp_path) == ["run"]


def test_draw_draws_the_dropped_file_over_the_run_shown():
    """drawn-source-run-first: while the file box holds an adapter, Draw's pictures are that file's."""
    assert page_draw.drawn_source({"run": "r", "adapter": "a.safetensors"}) == ("adapter", "a.safetensors")
    assert page_draw.drawn_source({"run": "r"}) == ("run", "r")


def test_pictures_of_an_earlier_draw_are_marked_once_however_many_draws_fail():
    """earlier-marked-twice: a second failed Draw would caption them "earlier draw: earlier draw: ..."."""
    once, marked = page_draw.from_the_earlier_draw([("a.png", "smiling")], False)
    twice, still_marked = page_draw.from_the_earlier_draw(once, marked)
    assert twice == [("a.png", page_draw.EARLIER + "smiling")] and still_marked is True


def test_a_stopped_draw_keeps_the_earlier_pictures_marked():
    """stopped-draw-clears: Stop during Draw keeps the pictures shown (marked as the earlier draw's), not none."""
    kept, drawn_with, marked = page_draw.after_draw(page_draw.STOPPED, [("a.png", "smiling")], {"run": "r"},
                                                    {"run": "r"}, False)
    assert kept == [("a.png", page_draw.EARLIER + "smiling")]
    assert drawn_with == {"run": "r"} and marked is True


# --- Evaluate's names and metrics ------------------------------------------------------------------------------

def test_two_pictures_whose_names_differ_only_in_case_get_two_names():
    """own-names-case: face.png and Face.png are one file on a case-blind file system; the second is Face-2."""
    assert scoring.own_names([Path("a/face.png"), Path("b/Face.png")]) == ["face.png", "Face-2.png"]


def test_a_picture_named_as_the_prompts_file_does_not_take_its_name():
    """own-names-prompts-free: a dropped prompts.json would overwrite the prompts file the scoring reads."""
    assert scoring.own_names([Path("a/prompts.json"), Path("a/PROMPTS.csv")]) == ["prompts-2.json", "PROMPTS-2.csv"]


def test_a_metrics_box_of_only_commas_means_the_model_s_metrics():
    """metrics-commas-literal: " , ," names no metric, so the tab scores with the ones it started with."""
    assert scoring.metric_names(" , ,", "tinyfaces") == scoring.metrics_for("tinyfaces")


def test_the_evaluate_tab_s_metrics_are_the_served_model_s():
    """metrics-not-models: TinyFaces' 32 px pictures get its own metrics, as `lowdim eval` picks them."""
    from lowdim_sd.eval.job import model_metrics

    assert scoring.metrics_for("tinyfaces") == model_metrics("tinyfaces") != scoring.metrics_for("sd15")


# --- the photo -------------------------------------------------------------------------------------------------

def test_a_photo_cut_short_is_refused_when_dropped(tmp_path):
    """photo-not-decoded: a partly copied PNG (its header reads) is refused at once, not after the model loads;
    a picture checked without ``whole`` (eval's) is only opened."""
    whole = tmp_path / "whole.png"
    Image.new("RGB", (64, 64), "red").save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(LowdimError, match="^cut.png is"):
        photos.check_photo(cut)
    assert photos.check_photo(whole) == whole
    assert photos.check_photo(cut, whole=False) == cut


def test_a_face_number_past_the_last_face_is_refused():
    """face-past-last-ok: a photo with 2 faces has Face 0 and Face 1; Face 2 is refused, naming the photo."""
    photos.check_face_found(1, 2, "p.png")
    with pytest.raises(checks.NotOffered, match="p.png has 2 faces"):
        photos.check_face_found(2, 2, "p.png")


def test_face_0_is_fine_for_a_model_that_cuts_no_face():
    """no-cut-face-zero-refused: TinyFaces uses the whole photo, its one face being Face 0."""
    photos.check_no_face_cut(0, "tinyfaces")
    photos.check_no_face_cut(None, "tinyfaces")
    with pytest.raises(checks.NotOffered, match="Face 1 asked for"):
        photos.check_no_face_cut(1, "tinyfaces")


def test_an_adapter_dropped_as_the_photo_says_where_it_goes(tmp_path):
    """adapter-photo-line-lost: a lowdim adapter in the photo box is named as one, with Draw's box to use."""
    path = tmp_path / "adapter.safetensors"
    save_file({"x": np.zeros(2, dtype=np.float32)}, str(path), metadata={"format": FORMAT})
    with pytest.raises(LowdimError, match="^adapter.safetensors is a lowdim adapter, not a photo: drop it in Draw"):
        photos.check_photo(path)


def test_a_folder_as_the_photo_is_the_photo_s_own_line(tmp_path, capsys):
    """Defect 2 of the audit: PIL's IsADirectoryError led the line's own check to open the path again, which
    raised inside the handler: "unexpected error: [Errno 21] ..." and a traceback on the terminal. The
    preview says the photo's own line."""
    from lowdim_sd.ui.page import show_photo

    folder = tmp_path / "holiday"
    folder.mkdir()
    with pytest.raises(LowdimError, match=f"^holiday {re.escape(UNREADABLE)}$"):
        photos.check_photo(folder)
    crop, note, _ = show_photo(str(folder), "tinyfaces")  # the preview's note, in bold, where its crop goes
    assert crop is None and note == f"**holiday {UNREADABLE}**"
    assert "Traceback" not in capsys.readouterr().err


# --- the upload folder -----------------------------------------------------------------------------------------

def test_the_upload_folder_setting_is_put_back_after_the_page(tmp_path, monkeypatch):
    """env-not-restored: a page built in Python would leave Gradio pointed at a removed folder."""
    monkeypatch.setenv(upload_folder.ENV, str(tmp_path))
    with upload_folder.private_uploads() as folder:
        assert os.environ[upload_folder.ENV] == str(folder)
    assert os.environ[upload_folder.ENV] == str(tmp_path)
    monkeypatch.delenv(upload_folder.ENV)
    with upload_folder.private_uploads():
        pass
    assert upload_folder.ENV not in os.environ
