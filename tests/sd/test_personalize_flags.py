"""`lowdim personalize` flags that cannot act on the run asked for are one line, not silently dropped: finetune
flags with --only-hyper, --face-index without the crop; and the `draw it:` line suggests only the `lowdim
generate` flags that act on the adapter's layers."""

from __future__ import annotations

import json
import re

import pytest

import lowdim
from lowdim.registry import Entry, get_registry
from lowdim_cli.main import main
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.plugin import SDBackend


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


# ------------------------------------------------------------------------------ --only-hyper: no finetune


@pytest.mark.parametrize(("args", "flag"), [
    (["--steps", "40"], "--steps"), (["--rank", "8"], "--rank"), (["--lr", "0.01"], "--lr"),
    (["--batch-size", "2"], "--batch-size"), (["--gradient-checkpointing"], "--gradient-checkpointing"),
    (["--cuda-graphs"], "--cuda-graphs"), (["--keep-styles", "0.1"], "--keep-styles"),
    (["--rank", "8", "--steps", "40"], "--steps"),  # one line: the first named
    (["--rank", "4"], "--rank"),  # typed, though at its default
])
def test_finetune_flags_with_only_hyper_are_one_line_naming_one(tiny_sd, face, tmp_path, capsys, make_hypernet,
                                                                 args, flag):
    code, said = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "o", "--no-crop",
                     "--hypernet", make_hypernet(1), "--only-hyper", *args)
    assert code == 1 and f"{flag} " in said and "the fast finetune, which --only-hyper skips" in said
    assert "Traceback" not in said and not (tmp_path / "o").exists()


def test_only_hyper_records_and_times_no_finetune(tiny_sd, face, tmp_path, make_hypernet):
    only = PersonalizeJob(model=str(tiny_sd), image=face, out=tmp_path / "o", hypernet=make_hypernet(1),
                          only_hyper=True, preview=False, crop=False)
    result = personalize(only, progress=False)
    made = json.loads(lowdim.read_adapter(result.adapter).metadata["extra"])
    assert made["only_hyper"] is True
    assert not {"steps", "rank", "learning_rate", "batch_size"} & set(made)  # no LoRA was trained
    assert "fast finetune" not in result.stages and "save adapter" in result.stages
    # 0 steps says the same as --only-hyper (the bench's only-hyper rows spell it so): not a conflict.
    personalize(PersonalizeJob(**{**only.__dict__, "steps": 0, "out": tmp_path / "p"}), progress=False)


def test_show_lists_no_finetune_setting_of_an_only_hyper_adapter(tiny_sd, face, tmp_path, capsys, make_hypernet):
    code, _ = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "o", "--no-crop",
                  "--hypernet", make_hypernet(1), "--only-hyper", "--no-preview", "--device", "cpu")
    assert code == 0
    code, said = run(capsys, "show", tmp_path / "o" / "adapter.safetensors")
    assert code == 0 and "recipe: only_hyper" in said
    assert not re.search(r"recipe: (rank|learning_rate|steps|batch_size)", said)


# -------------------------------------------------------------------------- --face-index: picks a face to crop


@pytest.fixture
def uncropped(tiny_sd, monkeypatch):
    """A registered model on the tiny pipeline that does not crop by default, as TinyFaces."""
    backend = SDBackend("tiny-uncropped", str(tiny_sd), crops_faces=False)
    monkeypatch.setitem(get_registry().backends, backend.name, Entry(backend.name, backend, "test"))
    return backend.name


def test_face_index_with_no_crop_is_one_line(tiny_sd, face, tmp_path, capsys):
    code, said = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "o", "--no-crop",
                     "--face-index", "1")
    assert code == 1 and "--face-index" in said and "--no-crop" in said and "Traceback" not in said
    assert not (tmp_path / "o").exists()


def test_face_index_on_a_model_that_does_not_crop_by_default_is_one_line_suggesting_crop(uncropped, face, tmp_path,
                                                                                       capsys):
    code, said = run(capsys, "personalize", "-m", uncropped, "-i", face, "-o", tmp_path / "o", "--face-index", "1")
    assert code == 1 and "--face-index" in said and f"{uncropped} does not crop" in said and "--crop" in said
    assert not (tmp_path / "o").exists()


def test_face_index_without_face_detection_installed_is_one_line(tiny_sd, face, tmp_path, capsys, monkeypatch):
    import lowdim_sd.face_inputs as face_inputs

    monkeypatch.setattr(face_inputs, "faces_available", lambda: False)
    code, said = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "o", "--face-index", "1")
    assert code == 1 and "--face-index" in said and "lowdim[faces]" in said
    assert "using the image as it is" not in said  # no warning that the run goes on, before the error that it won't


# ------------------------------------------------------------------------ the `draw it:` line: flags that act


@pytest.mark.parametrize(("layers", "suggested", "left_out"), [
    ("unet-self", "--adapter-start 0.3 --adapter-end 0.8", ["--text-encoder-scale", "--cross-attention-scale"]),
    ("unet", "--adapter-start 0.3 --adapter-end 0.8 to keep more of each style, and --cross-attention-scale 0.25",
     ["--text-encoder-scale"]),
    ("text", None, ["--text-encoder-scale", "--adapter-start", "--cross-attention-scale"]),
    (None, "--text-encoder-scale 0 --adapter-start 0.3 --adapter-end 0.8 to keep more of each style, and "
           "--cross-attention-scale 0.25", []),
])
def test_the_draw_line_suggests_only_the_flags_that_act_on_the_adapters_layers(tiny_sd, face, tmp_path, capsys,
                                                                               layers, suggested, left_out):
    code, said = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "o", "--no-crop", "--steps",
                     "1", "--no-preview", "--device", "cpu", *(["--layers", layers] if layers else []))
    assert code == 0
    draw = said[said.index("draw it:"):]
    if suggested:
        assert suggested in draw
    else:  # a text-encoder-only adapter: its part at 0 would draw the base model; nothing to suggest
        assert "(add" not in draw
    assert not [flag for flag in left_out if flag in draw]


def test_a_crop_margin_with_nothing_cropped_is_one_line(tiny_sd, uncropped, face, tmp_path, capsys):
    code, said = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "o", "--no-crop",
                     "--crop-margin", "0.3")
    assert code == 1 and "--crop-margin sets the room around the cropped face, and --no-crop turns cropping off" \
        in said and "Traceback" not in said
    code, said = run(capsys, "personalize", "-m", uncropped, "-i", face, "-o", tmp_path / "o", "--crop-margin",
                     "0.3")
    assert code == 1 and f"{uncropped} does not crop by default" in said and "leave --crop-margin out" in said
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "flag"), [
    (["--preview-steps", "5"], "--preview-steps"), (["--preview-steps", "30"], "--preview-steps"),  # its default
    (["--preview-draw", "0.5"], "--preview-draw"),
])
def test_preview_flags_with_no_preview_are_one_line_naming_one(tiny_sd, face, tmp_path, capsys, args, flag):
    code, said = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "o", "--no-crop",
                     "--no-preview", *args)
    assert code == 1 and f"{flag} shapes the preview, which --no-preview skips" in said
    assert "Traceback" not in said and not (tmp_path / "o").exists()


@pytest.mark.parametrize("token", ["", "  "])
def test_an_empty_token_is_one_line_not_quietly_sks(tiny_sd, face, tmp_path, capsys, token):
    code, said = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "o", "--no-crop",
                     "--token", token)
    assert code == 1 and "--token is empty" in said and not (tmp_path / "o").exists()
