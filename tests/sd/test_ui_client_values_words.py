"""``lowdim ui``'s lines in the page's own words: its controls, never the CLI's flags; an upload by its own name,
never Gradio's folder or the files the page writes for itself; a photo too large said as too large, however
large; a face the preview does not offer refused as Personalize refuses it.

The page's handlers are called directly, as in ``test_ui_client_values``.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pytest
from PIL import Image
from ui_requests import handler, png_header, refused  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
NO_FACE_CUT = ("Face 2 asked for, but no face is cut out of the photo for tinyfaces (it uses the photo as it is): "
               "leave Face at 0")


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd):
    """(studio, its page, one finished run), the page serving TinyFaces as ``lowdim ui`` does by default."""
    from lowdim_sd.ui.page import build_page

    folder = tmp_path_factory.mktemp("words")
    studio = Studio(StudioConfig(model="tinyfaces", out=folder / "ui"))
    record = studio.personalize(FACE, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    return studio, build_page(studio), record


@pytest.fixture
def uploads(tmp_path, monkeypatch) -> Path:
    """A folder the page takes for Gradio's upload folder; each file dropped in a folder of its own hash."""
    from lowdim_sd.ui import page_parts

    folder = tmp_path / "gradio"
    monkeypatch.setattr(page_parts, "upload_folders", lambda: re.compile(re.escape(str(folder)) + r"/[^/\s]+/"))
    return folder


def uploaded(uploads: Path, name: str, source: Path = FACE) -> str:
    path = uploads / f"{abs(hash(name)):x}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, path)
    return str(path)





# A6: the page's controls, not the CLI's flags -------------------------------------------------------------------


@pytest.mark.parametrize(("how", "line"), [
    ("start=2", "'start=2': How to draw's start must be a fraction of the steps in [0, 1), got 2.0"),
    ("start=0.3@end=0.1", "'start=0.3@end=0.1': How to draw's end must be a fraction of the steps after its start "
                          "(0.3) and at most 1, got 0.1"),
    ("te=1e999", "'te=1e999': How to draw's te must be a finite number, got inf"),
    ("ca=1e999", "'ca=1e999': How to draw's ca must be a finite number, got inf"),
])
def test_how_to_draw_is_refused_in_its_own_terms(made, how, line):
    _, page, record = made
    assert refused(handler(page, "draw_more"), {"run": record.name}, "tinyfaces", "a [V] face", 1.0, how, 0, 1,
                   1) == line


def test_the_metrics_box_is_named_as_the_page_names_it(made, uploads):
    _, page, _ = made
    photo = uploaded(uploads, "me.png")
    assert refused(handler(page, "run"), [photo], photo, "a [V] face", "sks",
                   "tinyfaces-image,tinyfaces-image") == "the Metrics box names 'tinyfaces-image' twice"


def test_a_reference_photo_eval_cannot_use_is_named_as_the_reference_photo(made, uploads, tmp_path):
    _, page, _ = made
    Image.new("RGB", (8, 8), "gray").save(tmp_path / "tiny8.png")
    reference = uploaded(uploads, "tiny8.png", tmp_path / "tiny8.png")
    line = refused(handler(page, "run"), [uploaded(uploads, "me.png")], reference, "a [V] face", "sks",
                   "tinyfaces-image")
    assert line.startswith("reference tiny8.png (the Reference photo): 8x8 pixels is too small")


def test_no_advice_the_page_gives_names_a_flag():
    from lowdim_sd.ui.checks import PAGE_TERMS, in_page_terms

    assert not [page for _, page in PAGE_TERMS if "--" in page]
    note = "only the rank-4 LoRA on top trains (600 steps unless --steps); `lowdim train --space x` trains it"
    assert "(600 steps unless Finetune steps is set)" in in_page_terms(note)


def test_an_empty_metrics_box_scores_what_the_box_starts_with(made, uploads):
    """A box emptied, or holding only commas and spaces (no name in it), means what it started with. Not the
    paper's metrics, whose models (DINO, CLIP) TinyFaces' 32 px pictures do not suit and which may not be had
    offline: the page's own for the model it serves, as its Metrics box shows them."""
    from lowdim_sd.ui.scoring import metrics_for

    _, page, _ = made
    photo = uploaded(uploads, "me.png")
    scored = [handler(page, "run")([photo], photo, "a photo of a [V] face", "sks", box)
              for box in (",".join(metrics_for("tinyfaces")), "", None, ",", " , ", " ,, ")]
    assert all(report == scored[0] for report in scored) and "Identity" in scored[0]


@pytest.mark.parametrize(("what", "flag", "metrics"), [("DINO", "--dino-model", "dino"),
                                                       ("CLIP", "--clip-model", "clip-i and clip-t")])
def test_a_metric_model_eval_cannot_have_is_advice_in_the_pages_terms(monkeypatch, what, flag, metrics):
    from lowdim_sd.eval import hub
    from lowdim_sd.ui.checks import in_page_terms

    def not_cached(source, **kwargs):
        raise OSError("not in the cache")

    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(LowdimError) as caught:
        hub.load_pretrained(not_cached, "org/model", what, flag)
    said = in_page_terms(str(caught.value))
    assert "--" not in said and said.endswith(f"download it where there is network, or take {metrics} out of the "
                                              f"Metrics box")
    tiny = "these are 32 px images, as TinyFaces draws them: score them with --metrics tinyfaces-identity"
    assert in_page_terms(tiny).endswith("score them with the Metrics box set to tinyfaces-identity")


@pytest.mark.parametrize(("box", "advice"), [("clip-t", "take clip-t out"), ("clip-i", "take clip-i out"),
                                              ("clip-t,clip-i", "take clip-t and clip-i out")])
def test_a_clip_model_eval_cannot_have_names_only_the_clip_metrics_asked(made, uploads, monkeypatch, box, advice):
    from lowdim_sd.eval import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the CLIP model is not in this machine's cache: never fetch it
    _, page, _ = made
    photo = uploaded(uploads, "me.png")
    line = refused(handler(page, "run"), [photo], photo, "a [V] face", "sks", box)
    assert line.endswith(f"download it where there is network, or {advice} of the Metrics box"), line
    assert "--" not in line


def test_a_clip_metric_skipped_beside_one_that_scored_is_named_alone_in_the_notes(made, uploads, monkeypatch):
    from lowdim_sd.eval import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, page, _ = made
    photo = uploaded(uploads, "me.png")
    report = handler(page, "run")([photo], photo, "a [V] face", "sks", "tinyfaces-image,clip-t")
    assert "or take clip-t out of the Metrics box" in report, report
    assert "clip-i" not in report and "--clip-model" not in report


# A7: an upload by its own name; the page's own files in the page's terms ------------------------------------------


def test_the_report_names_each_picture_by_its_own_name(made, uploads, tmp_path):
    _, page, _ = made
    (tmp_path / "broken.png").write_bytes(FACE.read_bytes()[:300])  # a header that reads, then nothing
    pictures = [uploaded(uploads, "me.png"), uploaded(uploads, "broken.png", tmp_path / "broken.png")]
    report = handler(page, "run")(pictures, uploaded(uploads, "ref.png"), "a photo of a [V] face", "sks",
                                  "tinyfaces-identity")
    assert "| me.png |" in report and "1 image left out: broken.png" in report
    assert "- skipping generated image broken.png: not a readable image" in report
    assert str(uploads) not in report and "lowdim-eval-" not in report and "000.png" not in report


def test_the_reference_photo_is_named_by_its_own_name_in_the_notes(made, uploads):
    from lowdim_sd.face_models import faces_available

    if not faces_available():
        pytest.skip("face-rec needs the faces extra")
    _, page, _ = made
    report = handler(page, "run")([uploaded(uploads, "me.png")], uploaded(uploads, "ref.png"), "a [V] face", "sks",
                                  "face-rec")
    assert "no face found in ref.png" in report and str(uploads) not in report


def test_pictures_of_one_name_are_told_apart_and_the_prompts_file_keeps_its_name():
    from lowdim_sd.ui.scoring import own_names

    paths = [Path("a/me.png"), Path("b/me.png"), Path("c/ME.png"), Path("d/prompts.json"), Path("e/me-2.png")]
    assert own_names(paths) == ["me.png", "me-2.png", "ME-3.png", "prompts-2.json", "me-2-2.png"]


def test_a_prompt_sent_null_is_the_empty_box_and_no_file_of_the_pages_is_named(made, uploads, tmp_path):
    studio, page, _ = made
    photo = uploaded(uploads, "me.png")
    report = handler(page, "run")([photo], photo, None, None, "tinyfaces-identity")  # as "" from the page
    assert "| me.png |" in report
    with pytest.raises(LowdimError, match=r"^Their prompt must be text, got None$"):
        studio.evaluate([photo], photo, None, metrics="tinyfaces-identity")  # for a caller in Python
    (tmp_path / "broken.png").write_bytes(FACE.read_bytes()[:300])
    line = refused(handler(page, "run"), [uploaded(uploads, "broken.png", tmp_path / "broken.png")], photo,
                   "a [V] face", "sks", "tinyfaces-identity")
    assert line.startswith("no usable generated image in the Generated pictures: ")  # eval's own reasons follow
    assert "prompts.json" not in line and "lowdim-eval-" not in line and str(uploads) not in line


# A8: a photo too large, however large ---------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "said"), [(20000, 20000, "400 MP"),  # over twice PIL's own limit
                                                       (10000, 10000, "10000x10000 pixels (100 MP)"),  # over it
                                                       (9000, 6000, "9000x6000 pixels (54 MP)")])
def test_a_photo_over_pils_own_limit_is_too_large_not_unreadable(made, tmp_path, width, height, said):
    from lowdim_sd.ui.photos import check_photo

    photo = png_header(tmp_path / "huge.png", width, height)
    line = f"huge.png is {said}; photos up to 50 MP are accepted: scale it down to 50 MP or less"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning stays off the terminal
        with pytest.raises(LowdimError) as caught:
            check_photo(photo)
    assert str(caught.value) == line
    _, note, _ = handler(made[1], "show_photo")(str(photo), "tinyfaces")
    assert note == f"**{line}**"


# A9: the preview refuses a face it does not offer, as Personalize does ----------------------------------------------


def test_the_preview_refuses_a_face_the_model_does_not_cut_as_personalize_does(made, capsys):
    studio, page, _ = made
    assert refused(handler(page, "show_crop"), str(FACE), "tinyfaces", 2) == NO_FACE_CUT
    assert refused(handler(page, "personalize"), str(FACE), "tinyfaces", True, 2, 4, 0, 1, 2,
                   request=None) == NO_FACE_CUT
    image, note, face = handler(page, "show_crop")(str(FACE), "tinyfaces", 0)
    assert image is not None and "as it is" in note and face["value"] == 0
    assert not list(studio.config.out.glob(".*")) and "Traceback" not in capsys.readouterr().err


def test_another_model_cuts_the_photo_at_a_face_it_offers(made):
    """The page's own Face may hold a face of the last model's cut when the Model changes: that model's preview
    starts at its largest face rather than refuse what the page itself sent."""
    _, page, _ = made
    image, note, face = handler(page, "show_model")(str(FACE), "tinyfaces", 2)
    assert image is not None and "as it is" in note and face["value"] == 0 and face["choices"] == [0]
    assert refused(handler(page, "show_model"), str(FACE), "tinyfaces", "abc").startswith("Face must be the number")
