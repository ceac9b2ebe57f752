"""`lowdim eval` on a folder as `lowdim generate` writes it: references come from -r, and a bad one stops the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lowdim_cli.main import main
from lowdim_sd.eval.folder import load_eval_set
from lowdim_sd.eval.prompts_file import EvalFolderError


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8))


@pytest.fixture
def generated(tmp_path):
    """Images and the prompts.json of `lowdim generate`: prompt and seed, no references, no token."""
    folder = tmp_path / "gen"
    folder.mkdir()
    entries = []
    for seed in (1, 2):
        name = f"000-a-v-face-seed{seed}.png"
        picture(seed).save(folder / name)
        entries.append({"image": name, "prompt": "a [V] face", "seed": seed})
    (folder / "prompts.json").write_text(json.dumps({"images": entries}))
    return folder


def eval_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["eval", *map(str, args), "--metrics", "tinyfaces-identity", "--no-progress", "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("bad", ["nope.png", "notes.txt", "empty-folder"])
def test_a_given_reference_that_cannot_be_used_is_one_line_naming_it(generated, tmp_path, capsys, bad):
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "empty-folder").mkdir()
    out = tmp_path / "out"
    code, stdout, stderr = eval_cli(capsys, generated, "-r", tmp_path / bad, "--out", out)
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0] and "Traceback" not in stderr
    assert "(--references)" in lines[0] and "EvalJob" not in lines[0]
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:.*no usable reference")
def test_the_library_refuses_a_missing_given_reference_but_skips_a_listed_one(generated, tmp_path):
    with pytest.raises(EvalFolderError, match="nope.png.*no such file") as refused:
        load_eval_set(generated, references=[tmp_path / "nope.png"])
    assert "(EvalJob(references=...))" in str(refused.value) and "--references" not in str(refused.value)
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(EvalFolderError, match=r"empty-folder \(EvalJob\(references=\.\.\.\)\) holds no images"):
        load_eval_set(generated, references=[tmp_path / "empty-folder"])
    prompts = json.loads((generated / "prompts.json").read_text())
    (generated / "prompts.json").write_text(json.dumps({**prompts, "references": ["gone.png"]}))
    with pytest.warns(UserWarning, match="gone.png: no such file"):
        assert load_eval_set(generated).samples[0].references == ()


def test_generated_folder_scores_with_references_from_the_command_line(generated, tmp_path, capsys):
    picture(1).save(tmp_path / "me.png")
    code, stdout, stderr = eval_cli(capsys, generated, "-r", tmp_path / "me.png", "--out", tmp_path / "out")
    assert code == 0, stderr
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report["metrics"]["tinyfaces-identity"]["scored"] == 2


def test_without_references_the_note_says_how_to_pass_them(generated, capsys):
    code, stdout, stderr = eval_cli(capsys, generated)
    assert code == 1  # nothing could be scored: a failure, after the note saying why
    assert "--references/-r" in " ".join(stdout.split())
    assert "no metric scored any of the 2 images" in " ".join(stderr.split())


def test_help_does_not_promise_references_from_generate(capsys):
    assert main(["eval", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "naming each one's prompt and reference photo(s)" not in text
    assert "but no references" in text and "-r/--references" in text
