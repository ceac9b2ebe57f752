"""The most common near-miss value words get the word meant, in one line naming the flag: torch's own dtype
names (half, float16, float32, bfloat16) for --dtype, gpu for --device, and a misspelt model for `lowdim ui`."""

from __future__ import annotations

import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.devices import resolve_device, resolve_dtype


@pytest.mark.parametrize(("typed", "meant"), [("half", "fp16"), ("float16", "fp16"), ("float32", "fp32"),
                                              ("bfloat16", "bf16"), ("FP16", "fp16"), ("float", "fp32")])
def test_torchs_name_for_a_dtype_gets_the_dtype_meant(typed, meant):
    with pytest.raises(LowdimError) as refused:
        resolve_dtype(typed, torch.device("cpu"))
    said = str(refused.value)
    assert said.startswith("dtype must be 'auto', 'fp32', 'fp16' or 'bf16'") and f"'{typed}'" in said
    assert f"did you mean {meant}?" in said and "\n" not in said


def test_a_dtype_word_far_from_any_gets_the_list_alone():
    with pytest.raises(LowdimError) as refused:
        resolve_dtype("float8", torch.device("cpu"))
    assert "did you mean" not in str(refused.value) and "dtype must be" in str(refused.value)


@pytest.mark.parametrize(("typed", "meant"), [("gpu", "cuda"), ("GPU", "cuda"), ("gpu:1", "cuda:1"),
                                              ("cdua", "cuda")])
def test_gpu_gets_cuda(typed, meant):
    with pytest.raises(LowdimError) as refused:
        resolve_device(typed)
    said = str(refused.value)
    assert f"unknown device '{typed}': use auto, cpu, cuda, cuda:N or mps" in said
    assert f"did you mean {meant}?" in said and "\n" not in said


def test_the_cli_says_it_in_one_line_before_any_model_loads(capsys, tmp_path):
    code = main(["generate", "-m", "tinyfaces", "-p", "hi", "--dtype", "half", "-o", str(tmp_path / "out")])
    said = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(said) == 1 and "--dtype" in said[0] and "did you mean fp16?" in said[0], said


def test_ui_answers_a_misspelt_model_with_the_model_meant():
    from lowdim_sd.ui.checks import check_model

    with pytest.raises(LowdimError, match=r"^model 'tinyfacez' is neither an installed model \(.*\) nor a folder or "
                                          r"file on this machine; did you mean tinyfaces\?$"):
        check_model("tinyfacez")
    with pytest.raises(LowdimError) as far:
        check_model("nonsense")
    assert "did you mean" not in str(far.value)


@pytest.mark.parametrize("command", ["train", "personalize"])
def test_save_dtype_near_misses_get_the_word_meant(command, tmp_path, capsys):
    args = {"train": ["train", "-m", "tinyfaces", "-i", str(tmp_path), "-o", str(tmp_path / "o")],
            "personalize": ["personalize", "-m", "tinyfaces", "-i", str(tmp_path / "x.png"), "-o", str(tmp_path / "o")]}
    assert main([*args[command], "--save-dtype", "half"]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "--save-dtype must be one of" in said and "did you mean fp16?" in said


def test_export_save_dtype_near_miss_gets_the_word_meant(tmp_path):
    from lowdim_sd.export import ExportError, export_adapter

    with pytest.raises(ExportError, match=r"did you mean bf16\?"):
        export_adapter(tmp_path / "a.safetensors", tmp_path / "b.safetensors", "kohya", dtype="bfloat16")


def test_bench_speed_dtype_near_miss_gets_the_word_meant():
    from lowdim_sd.bench.speed_setup import resolve_settings

    with pytest.raises(LowdimError) as refused:
        resolve_settings(True, "cpu", "float32", None, None)
    said = str(refused.value)
    assert said.startswith("--dtype must be one of auto, fp32, fp16, bf16") and "did you mean fp32?" in said
