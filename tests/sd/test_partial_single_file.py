"""A single-file checkpoint missing part of its text encoder or VAE is refused in one line naming the file and the
part (review CT, finding 1), never torch's "Cannot copy out of meta tensor" traceback from moving the pipeline."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.ldm_checkpoint import save_single_file
from lowdim_sd.loading import load_sd

# A cut of one block in each part diffusers fills on 'meta' first: what a half-written or hand-pruned file lacks.
CUTS = {
    "text encoder": "cond_stage_model.transformer.text_model.encoder.layers.0.",
    "VAE": "first_stage_model.decoder.up.0.",
}


@pytest.fixture(scope="module")
def whole(tiny_sd, tmp_path_factory):
    pipe = load_sd(str(tiny_sd), device="cpu", dtype="fp32").pipe
    return load_file(str(save_single_file(pipe, tmp_path_factory.mktemp("whole") / "whole.safetensors")))


def _cut(whole, prefix, path):
    kept = {key: value for key, value in whole.items() if not key.startswith(prefix)}
    assert len(kept) < len(whole), prefix  # the cut removed something
    save_file(kept, str(path), metadata={"format": "pt"})
    return path


@pytest.mark.parametrize("part", list(CUTS))
def test_python_gets_a_lowdim_error_naming_the_file_and_part(part, whole, tiny_sd, tmp_path):
    partial = _cut(whole, CUTS[part], tmp_path / "partial.safetensors")
    with pytest.raises(LowdimError) as refused:
        load_sd(str(partial), config=str(tiny_sd), device="cpu", dtype="fp32")
    message = str(refused.value)
    assert str(partial) in message and f"of the {part}" in message and "not a whole SD1.5 checkpoint" in message
    assert "meta tensor" not in message


@pytest.mark.parametrize("part", list(CUTS))
def test_the_cli_says_it_in_one_line(part, whole, tiny_sd, tmp_path, capsys):
    partial = _cut(whole, CUTS[part], tmp_path / "partial.safetensors")
    code = main(["generate", "-m", str(partial), "--model-config", str(tiny_sd), "-p", "a face", "--steps", "1",
                 "--device", "cpu", "-o", str(tmp_path / "img")])
    text = capsys.readouterr().err
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in text and len(lines) == 1, text
    assert str(partial) in lines[0] and f"of the {part}" in lines[0] and "meta tensor" not in lines[0]
    assert not (tmp_path / "img").exists()
