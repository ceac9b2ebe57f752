"""Devices and dtypes as lowdim's options name them: what ``--device`` and ``--dtype`` take, what this machine
can run and train in, and the word a near-miss meant; each refusal is one line, before any model is built."""

from __future__ import annotations

from pathlib import Path

import torch

from lowdim.errors import LowdimError
from lowdim.option_words import counted, either

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICES = "auto, cpu, cuda, cuda:N or mps"
# The words people type for them (torch's own dtype names; "gpu"), answered with the word lowdim takes.
DTYPE_MEANT = {"half": "fp16", "float16": "fp16", "float": "fp32", "float32": "fp32", "single": "fp32",
               "bfloat16": "bf16"}
DEVICE_MEANT = {"gpu": "cuda", "nvidia": "cuda", "metal": "mps", "apple": "mps"}


def did_you_mean(typed: str, meant: dict[str, str], words: list[str]) -> str:
    """'; did you mean WORD?' for a known near-miss (``meant``, also as gpu:1) or a typo of one of ``words``; ''
    when nothing is close."""
    import difflib

    word = typed.strip().lower()
    kind, colon, index = word.partition(":")
    guess = meant.get(word) or (meant[kind] + colon + index if kind in meant and index.isdigit() else None)
    if guess is None:
        close = difflib.get_close_matches(word, words, n=1, cutoff=0.7)
        guess = close[0] if close else None
    return f"; did you mean {guess}?" if guess else ""


def dtype_name(dtype: torch.dtype, other: str | None = None) -> str:
    """The --dtype word for a torch dtype ('fp16'), as files and checks name it; another dtype is ``other``, or
    as torch says it."""
    return next((name for name, value in DTYPES.items() if value == dtype), other or str(dtype))


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; a named device must exist here, or one line says why."""
    if device != "auto":
        problem = device_problem(device)
        if problem is not None:
            raise LowdimError(problem)
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot run lowdim on this machine, in one line; None when it can.

    Checked before any model is built: torch accepts names such as ``mps`` or ``cuda:3`` on any machine
    and fails only when the first tensor moves there, deep inside a load.
    """
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        return f"unknown device '{device}': use {DEVICES}" + did_you_mean(device, DEVICE_MEANT,
                                                                            ["auto", "cpu", "cuda", "mps"])
    if chosen.type == "cpu":
        return None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            return f"device '{device}' was requested but CUDA is not available; use {use_cpu()}"
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            return (f"device '{device}' does not exist: this machine has {counted(count, 'CUDA device')}, "
                    f"cuda:0 to cuda:{count - 1}")
        return None
    if chosen.type == "mps":
        return None if mps_available() else (
            f"device '{device}' was requested but MPS (Apple silicon) is not available; use {use_cpu()}")
    return f"device '{device}' cannot run lowdim: use {DEVICES}"


def use_cpu() -> str:
    return either("--device cpu", "device='cpu'")


def dtype_given(word: str) -> str:
    """A dtype as its reader gave it: ``--dtype fp16`` on the command line; ``dtype='fp16'`` from Python, the
    parameter's name in every caller (TrainJob, PersonalizeJob, PrecomputeJob, load_sd)."""
    return either(f"--dtype {word}", f"dtype={word!r}")


def accelerator_available() -> bool:
    """Whether HF accelerate should use devices; without one it must be told cpu=True to go multi-process."""
    return torch.cuda.is_available() or mps_available()


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)  # absent from some builds
    return bool(mps and mps.is_available())


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is fp16 on accelerators and fp32 on CPU, where half precision is slow and fragile."""
    if dtype == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if dtype not in DTYPES:
        names = [repr(name) for name in ("auto", *DTYPES)]
        words = either(f"--dtype must be auto, {', '.join(DTYPES)}",
                       f"dtype must be {', '.join(names[:-1])} or {names[-1]}")
        raise LowdimError(f"{words}; got '{dtype}'" + did_you_mean(str(dtype), DTYPE_MEANT, ["auto", *DTYPES]))
    return DTYPES[dtype]


def check_training_dtype(device: str, dtype: str) -> None:
    """Weights in a precision the device cannot train in at speed are refused in one line, before any load.

    torch runs fp16 on a CPU, but without fast kernels (a personalize step takes about ten times as long
    as in fp32) and with overflowing gradients; bf16 without the instructions for it is emulated, slower
    than fp32. Loading in those dtypes stays possible (``lowdim merge`` may write fp16 weights on a CPU).
    """
    torch_device = resolve_device(device)
    chosen = resolve_dtype(dtype, torch_device)
    if torch_device.type == "cpu" and chosen == torch.float16:
        raise LowdimError(f"{dtype_given('fp16')} on a CPU: CPUs do not train in fp16 (no fast kernels, overflowing "
                          f"gradients); use {dtype_given('fp32')} ({either('auto', repr('auto'))} picks it on a CPU), "
                          f"or bf16 on a CPU with AVX512-BF16 or AMX")
    if torch_device.type == "cpu" and chosen == torch.bfloat16 and not cpu_has_bf16():
        raise LowdimError(f"{dtype_given('bf16')}: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 "
                          f"runs emulated, slower than fp32; use {dtype_given('fp32')}")
    if torch_device.type == "cuda" and chosen == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise LowdimError(f"{dtype_given('bf16')}: {torch.cuda.get_device_name(torch_device)} has no bf16; "
                          f"use {dtype_given('fp16')}")


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively; where the flags cannot be read, it is assumed to."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags
