"""A hand-written prompts file read as the user meant it, or refused in one line naming the file and line
(review E: E1 an unclosed quote, E2 a row with more fields than the header, E8 both prompts files present),
and a missing --face-model skips Face Rec alone (E7)."""

from __future__ import annotations

import json
import warnings

import pytest

from lowdim.option_words import command_line
from lowdim_cli.main import main
from lowdim_sd.eval.folder import EvalWarning
from lowdim_sd.eval.prompts_file import EvalFolderError, read_prompts


def _csv(folder, text: str):
    (folder / "prompts.csv").write_text(text)
    return folder


def test_an_unclosed_quote_is_an_error_naming_the_file_and_the_line(tmp_path):
    _csv(tmp_path, 'image,prompt\na.png,"a pencil sketch of a [V] face\nb.png,a [V] face\nc.png,a [V] face\n')
    with pytest.raises(EvalFolderError) as error:
        read_prompts(tmp_path)
    message = str(error.value)
    assert f"{tmp_path / 'prompts.csv'}, line 2" in message and "never closed" in message


@pytest.mark.parametrize(("header", "extra"), [("image,prompt", ""), ("image,prompt,references", ",ref.png")])
def test_a_row_with_more_fields_than_the_header_is_an_error_saying_to_quote(tmp_path, header, extra):
    _csv(tmp_path, f"{header}\na.png,a [V] face{extra}\nb.png,a pencil sketch of a [V] face, at night{extra}\n")
    with pytest.raises(EvalFolderError) as error:
        read_prompts(tmp_path)
    fields = header.count(",") + 1
    assert str(error.value) == (f"{tmp_path / 'prompts.csv'}, line 3: {fields + 1} fields, the header names "
                                f"{fields}; quote a prompt that holds a comma (\"a [V] face, at night\")")


def test_empty_fields_past_the_header_are_harmless(tmp_path):
    # Spreadsheets pad rows with empty cells; those hold no text that could be lost.
    _csv(tmp_path, "image,prompt\na.png,a [V] face,,\n")
    assert read_prompts(tmp_path).entries[0].prompt == "a [V] face"


def test_a_quoted_comma_is_read_whole(tmp_path):
    _csv(tmp_path, 'image,prompt\na.png,"a [V] face, at night"\n')
    assert read_prompts(tmp_path).entries[0].prompt == "a [V] face, at night"


def test_both_prompts_files_present_says_the_json_is_used(tmp_path):
    (tmp_path / "prompts.json").write_text(json.dumps({"images": {"a.png": "a [V] face"}}))
    _csv(tmp_path, 'image,prompt\na.png,"a pencil sketch of a [V] face"\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prompts = read_prompts(tmp_path)
    assert prompts.entries[0].prompt == "a [V] face"
    said = [str(w.message) for w in caught if issubclass(w.category, EvalWarning)]
    assert said == [f"{tmp_path} holds both prompts.json and prompts.csv; using prompts.json (delete or rename "
                    f"the other to use it)"]


def test_a_missing_face_model_skips_face_rec_naming_the_flag_and_the_others_run(capsys, tmp_path, noise):
    noise(1).save(tmp_path / "a.png")
    noise(2).save(tmp_path / "ref.png")
    (tmp_path / "prompts.json").write_text(json.dumps({"references": ["ref.png"], "images": {"a.png": "a face"}}))
    code = main(["eval", str(tmp_path), "--metrics", "face-rec,tinyfaces-identity", "--face-model",
                 str(tmp_path / "nope.dat"), "--device", "cpu", "--no-progress"])
    said = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert f"skipped face-rec: --face-model {tmp_path / 'nope.dat'} not found" in said
    assert "Identity" in said


def test_a_face_model_dlib_cannot_read_is_unavailable_naming_the_flag(tmp_path):
    from lowdim.metrics import MetricUnavailable
    from lowdim_sd.eval.paper_metrics import FaceRecMetric

    (tmp_path / "bad.dat").write_text("not a model")
    with command_line(), pytest.raises(MetricUnavailable,
                                       match=r"--face-model .*bad.dat is not a dlib face-recognition model"):
        FaceRecMetric(str(tmp_path / "bad.dat"))  # from Python it names EvalJob's options (AK3)
