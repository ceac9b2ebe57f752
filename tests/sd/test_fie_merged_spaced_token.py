"""`lowdim generate -m MERGED --token "sks person"`: a merged model's own two-word token, read from the record
`lowdim merge` left in it before the model loads, is taken as an -a file's is; a two-word token neither records is
still refused (FIE 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors_edit import rewrite  # tests/, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd import loading
from lowdim_sd.generate import GenerateConfig, generate
from lowdim_sd.generate_job import GenerateJob, generate_to_folder
from lowdim_sd.merged_model import save_merged

pytestmark = pytest.mark.usefixtures("one_thread")
SPACED = "sks person"  # what lowdim.save_adapter(token="sks person") records
PREFIX = "Error: --token must be one word, the rare word that [V] stands for; got 'ohwx man' (2 words), which only"


@pytest.fixture(scope="module")
def merged(tiny_sd, untrained_adapter, tmp_path_factory):
    """A single-file model `lowdim merge` wrote from an adapter taught the two words SPACED."""
    folder = tmp_path_factory.mktemp("fie_merged")
    spaced = rewrite(shutil.copyfile(untrained_adapter, folder / "spaced.safetensors"), token=SPACED)
    model = loading.load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    written, _ = save_merged(model, [(spaced, 1.0)], folder / "merged.safetensors")
    return str(written)


def _generate(model: str, out, *flags: str) -> list[str]:
    return ["generate", "-m", model, "-p", "a [V] face", "--steps", "1", "--guidance", "1", "--resolution", "16",
            "--device", "cpu", "--dtype", "fp32", "-o", str(out), *flags]


def test_generate_takes_the_merged_models_own_two_word_token(merged, tmp_path):
    out = tmp_path / "drawn"  # the command as a user runs it: its own process, its exit status
    done = subprocess.run([sys.executable, "-m", "lowdim_cli.main", *_generate(merged, out, "--token", SPACED)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "must be one word" not in done.stderr
    assert json.loads((out / "prompts.json").read_text())["settings"]["token"] == SPACED


def test_a_two_word_token_the_merged_model_was_not_taught_is_refused_naming_its_words(merged, tmp_path, capsys):
    code = main(_generate(merged, tmp_path / "drawn", "--token", "ohwx man"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(PREFIX) and "no -a file records a token" in lines[0]
    assert lines[0].endswith(f"the merged model was taught '{SPACED}'")
    assert not (tmp_path / "drawn").exists()


def test_a_plain_models_refusal_is_the_line_it_was(tiny_sd, tmp_path, capsys):
    code = main(_generate(str(tiny_sd), tmp_path / "drawn", "--token", "ohwx man"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and lines == [f"{PREFIX} the token an adapter file records may be, and no -a file records a "
                                   f"token"]


class Loaded(Exception):
    """load_sd reached: every check before it passed."""


@pytest.mark.parametrize(("token", "passes"), [(SPACED, True), ("ohwx man", False)])
def test_the_merged_models_words_are_read_before_it_loads(merged, tmp_path, monkeypatch, token, passes):
    def no_load(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(loading, "load_sd", no_load)
    job = GenerateJob(model=merged, config=GenerateConfig(prompts=["a [V] face"], token=token), out=tmp_path / "o")
    with pytest.raises(Loaded if passes else LowdimError):  # the refusal comes before any loading
        generate_to_folder(job)


def test_generate_in_python_takes_the_merged_models_own_token(merged):
    model = loading.load_sd(merged, device="cpu", dtype="fp32")
    config = GenerateConfig(prompts=["a [V] face"], token=SPACED, steps=1, resolution=16, guidance=1.0)
    assert len(generate(model, config)) == 1
    with pytest.raises(LowdimError, match="must be one word"):
        generate(model, GenerateConfig(prompts=["a [V] face"], token="ohwx man", steps=1, resolution=16))
