"""`generate`, `merge` and `export` each have one plain function a Python caller runs (``generate_to_folder``,
``merge_adapters``, ``checked_export``) that does what the command does: the same files, the same bytes and pixels
for the same seed, the same checks before the model loads. A bad field is refused in one line naming the field as
Python sets it, where the command's line names the flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.export import ExportJob, ExportResult, checked_export
from lowdim_sd.generate import GenerateConfig, GenerateJob, GenerateResult, generate_to_folder
from lowdim_sd.merged_model import MergeJob, MergeResult, merge_adapters

DRAW = ["-p", "a [V] face", "-p", "a [V] face at night", "--seed", "3", "--seed", "4", "--steps", "2",
        "--resolution", "16", "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture(scope="module")
def adapter(word_adapters):
    """A LiDB adapter of the tiny model with random values (word zwx): it changes what is drawn and merged."""
    return word_adapters[0]


def _no_load(monkeypatch):
    monkeypatch.setattr("lowdim_sd.loading.load_sd", lambda *a, **k: pytest.fail("the model loaded first"))


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_generate_to_folder_draws_what_the_command_draws(tiny_sd, adapter, tmp_path):
    assert main(["generate", "-m", str(tiny_sd), "-a", f"{adapter}:0.8", *DRAW, "-o", str(tmp_path / "cli")]) == 0
    config = GenerateConfig(prompts=["a [V] face", "a [V] face at night"], seeds=[3, 4], steps=2, resolution=16)
    result = generate_to_folder(GenerateJob(model=str(tiny_sd), config=config, adapters=[f"{adapter}:0.8"],
                                            out=str(tmp_path / "api"), device="cpu", dtype="fp32"))
    assert isinstance(result, GenerateResult) and result.grid == tmp_path / "api" / "grid.png"
    drawn = sorted(path.name for path in (tmp_path / "cli").glob("*.png") if path.name != "grid.png")
    assert [path.name for path in result.images] == drawn and len(drawn) == 4
    for name in [*drawn, "grid.png"]:
        assert np.array_equal(_pixels(tmp_path / "cli" / name), _pixels(tmp_path / "api" / name)), name
    records = [json.loads((tmp_path / folder / "prompts.json").read_text()) for folder in ("cli", "api")]
    assert records[0] == records[1] and records[0]["settings"]["adapters"][0]["scale"] == 0.8


def test_generate_job_names_its_field_from_python_and_the_flag_on_the_command_line(
        tiny_sd, adapter, tmp_path, monkeypatch, capsys):
    _no_load(monkeypatch)
    picture = tmp_path / "me.png"
    job = GenerateJob(model=str(tiny_sd), config=GenerateConfig(prompts="a [V] face"), adapters=str(adapter),
                      out=str(picture))
    with pytest.raises(LowdimError) as refused:
        generate_to_folder(job)
    assert "GenerateJob(out=...)" in str(refused.value) and "--out" not in str(refused.value)
    assert "a picture's name" in str(refused.value) and not picture.exists()
    assert main(["generate", "-m", str(tiny_sd), "-a", str(adapter), "-p", "x", "-o", str(picture)]) != 0
    assert f"--out {picture}: a picture's name" in capsys.readouterr().err
    with pytest.raises(LowdimError, match=r"GenerateJob\(config=\.\.\.\) takes a GenerateConfig"):
        generate_to_folder(GenerateJob(model=str(tiny_sd), config={"prompts": ["x"]}))  # type: ignore[arg-type]
    with pytest.raises(LowdimError, match=r"GenerateJob\(adapters=\.\.\.\) takes a list"):
        generate_to_folder(GenerateJob(model=str(tiny_sd), config=GenerateConfig(prompts="x"), adapters=3))  # type: ignore[arg-type]


def test_merge_adapters_writes_the_model_the_command_writes(tiny_sd, adapter, tmp_path, capsys):
    cli, api = tmp_path / "cli.safetensors", tmp_path / "api.safetensors"
    assert main(["merge", "-m", str(tiny_sd), "-a", f"{adapter}:0.5", "-o", str(cli), "--dtype", "fp32"]) == 0
    printed = capsys.readouterr().out
    result = merge_adapters(MergeJob(model=str(tiny_sd), adapters=[(adapter, 0.5)], out=str(api), dtype="fp32"))
    assert isinstance(result, MergeResult) and result.path == api and result.tokens == ["zwx"]
    assert f"(e.g. '{result.example}')" in " ".join(printed.split()) and "zwx" in result.example
    ours, theirs = load_file(str(cli)), load_file(str(api))
    assert ours.keys() == theirs.keys()
    assert all(ours[key].equal(theirs[key]) for key in ours)
    with pytest.raises(LowdimError, match="already exists"):  # the same refusals: an earlier output is kept
        merge_adapters(MergeJob(model=str(tiny_sd), adapters=[str(adapter)], out=api))


@pytest.mark.parametrize("field, value, python, flag", [
    ("fmt", "ckpt", "unknown MergeJob(fmt=...) 'ckpt'", "unknown --format 'ckpt'"),
    ("adapters", [], "adapter in MergeJob(adapters=...)", "--adapter FILE[:SCALE]"),
])
def test_merge_job_names_its_field_from_python(tiny_sd, tmp_path, monkeypatch, field, value, python, flag):
    _no_load(monkeypatch)
    job = MergeJob(model=str(tiny_sd), adapters=["unread.safetensors"], out=tmp_path / "m.safetensors")
    setattr(job, field, value)
    with pytest.raises(LowdimError) as refused:
        merge_adapters(job)
    assert python in str(refused.value) and flag not in str(refused.value)
    assert not (tmp_path / "m.safetensors").exists()


def test_checked_export_writes_the_file_the_command_writes(adapter, tmp_path, capsys):
    cli, api = tmp_path / "cli.safetensors", tmp_path / "api.safetensors"
    assert main(["export", str(adapter), "-f", "kohya", "-o", str(cli), "--save-dtype", "fp32"]) == 0
    result = checked_export(ExportJob(adapter=str(adapter), out=str(api), fmt="kohya", dtype="fp32"))
    assert result == ExportResult(api, None)
    ours, theirs = load_file(str(cli)), load_file(str(api))
    assert ours.keys() == theirs.keys() and all(ours[key].equal(theirs[key]) for key in ours)
    link = tmp_path / "link.safetensors"
    link.symlink_to(api)
    capsys.readouterr()
    assert main(["export", str(adapter), "-f", "kohya", "-o", str(link), "--overwrite"]) == 0
    assert "through the link" in capsys.readouterr().out
    through = checked_export(ExportJob(adapter=adapter, out=link, fmt="kohya", overwrite=True))
    assert through.link == link and through.path == api.resolve()


def test_export_job_names_its_fields_from_python(adapter, tmp_path, capsys):
    with pytest.raises(LowdimError) as refused:
        checked_export(ExportJob(adapter=adapter, fmt="zip"))
    assert "fmt=" in str(refused.value) and "--format" not in str(refused.value)
    taken = tmp_path / "taken.safetensors"
    checked_export(ExportJob(adapter=adapter, out=taken, fmt="kohya"))
    with pytest.raises(LowdimError) as refused:
        checked_export(ExportJob(adapter=adapter, out=taken, fmt="kohya"))
    assert "overwrite=True" in str(refused.value) and "choose another out" in str(refused.value)
    assert "another -o" not in str(refused.value)
    assert main(["export", str(adapter), "-o", str(taken)]) != 0
    assert "pass --overwrite to replace it, or choose another -o" in capsys.readouterr().err
