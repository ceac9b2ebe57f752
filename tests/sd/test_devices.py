"""A named --device must exist on this machine, or one line says why before any model is built: torch
accepts ``mps`` or ``cuda:3`` anywhere and fails only when the first tensor moves there."""

from __future__ import annotations

import pytest
import torch

import lowdim_sd.devices
from lowdim.errors import LowdimError
from lowdim_sd.devices import check_training_dtype, device_problem, resolve_device


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_the_cpu_always_runs():
    assert device_problem("cpu") is None and resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_a_gpu_that_exists_is_taken(two_gpus, device):
    assert device_problem(device) is None and resolve_device(device) == torch.device(device)


def test_a_gpu_index_past_the_last_names_the_ones_there_are(two_gpus):
    with pytest.raises(LowdimError, match=r"^device 'cuda:2' does not exist: this machine has 2 CUDA devices, "
                                          r"cuda:0 to cuda:1$"):
        resolve_device("cuda:2")


def test_cuda_without_a_gpu_says_to_use_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_problem("cuda:0") == "device 'cuda:0' was requested but CUDA is not available; use device='cpu'"


@pytest.mark.parametrize("available", [True, False])
def test_mps_is_taken_only_where_apple_silicon_offers_it(monkeypatch, available):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: available)
    problem = device_problem("mps")
    assert problem is None if available else problem == (
        "device 'mps' was requested but MPS (Apple silicon) is not available; use device='cpu'")


@pytest.mark.parametrize(("device", "words"), [
    ("gpu", "unknown device 'gpu': use auto, cpu, cuda, cuda:N or mps"),
    ("cuda:x", "unknown device 'cuda:x'"),
    ("meta", "device 'meta' cannot run lowdim: use auto, cpu, cuda, cuda:N or mps"),
    ("xpu", "device 'xpu' cannot run lowdim"),
])
def test_what_is_no_device_for_lowdim_is_refused_in_one_line(device, words):
    with pytest.raises(LowdimError) as refused:
        resolve_device(device)
    assert words in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("dtype", ["auto", "fp32"])
def test_the_cpu_trains_in_fp32(dtype):
    check_training_dtype("cpu", dtype)


def test_fp16_on_a_cpu_is_refused_for_training():
    with pytest.raises(LowdimError, match=r"^dtype='fp16' on a CPU: .*use dtype='fp32' \('auto' picks it on a CPU\)"):
        check_training_dtype("cpu", "fp16")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_needs_its_instructions(monkeypatch, native):
    monkeypatch.setattr(lowdim_sd.devices, "cpu_has_bf16", lambda: native)
    if native:
        check_training_dtype("cpu", "bf16")
    else:
        with pytest.raises(LowdimError, match="this CPU has no bf16 instructions"):
            check_training_dtype("cpu", "bf16")


def test_a_gpu_without_bf16_is_told_to_use_fp16(two_gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla T4")
    check_training_dtype("cuda", "auto")  # fp16 on a GPU
    with pytest.raises(LowdimError, match=r"^dtype='bf16': Tesla T4 has no bf16; use dtype='fp16'$"):
        check_training_dtype("cuda:1", "bf16")
