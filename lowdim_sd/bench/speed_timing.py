"""Timing for ``lowdim bench speed``: synchronised wall clocks, side-by-side variants, one record format.

A GPU runs asynchronously, so every timed call ends with a device synchronisation; otherwise a
clock would measure how fast work is queued, not done. Variants compared with each other are
timed in alternating blocks (the order rotating every round), so drift in the machine's speed
(other jobs, clocks, heat) hits each of them alike.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import torch

# A variant's setup prepares it (injects an adapter, builds an optimizer) and returns the call to time
# and the teardown that undoes the setup; neither setup nor teardown is timed.
Setup = Callable[[], tuple[Callable[[], None], Callable[[], None]]]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Clock:
    """Seconds of whole calls on one device, each ending with a synchronisation."""

    device: torch.device
    samples: list[float] = field(default_factory=list)

    @contextmanager
    def timed(self) -> Iterator[None]:
        synchronize(self.device)
        started = time.perf_counter()
        yield
        synchronize(self.device)
        self.samples.append(time.perf_counter() - started)


def time_calls(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    clock = Clock(device)
    for _ in range(repeats):
        with clock.timed():
            fn()
    return clock.samples


def side_by_side(variants: dict[str, Setup], device: torch.device, rounds: int, repeats: int,
                 warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each variant: ``rounds`` blocks each, in an order that rotates every round."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            fn, teardown = variants[name]()
            try:
                samples[name] += time_calls(fn, device, repeats, warmup)
            finally:
                teardown()
    return samples


def record(label: str, samples: list[float], **detail: object) -> dict:
    """One measurement as stored on disk and in the JSON: its samples and their median and quartiles."""
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {"label": label, "seconds": statistics.median(samples), "p25": quartiles[0], "p75": quartiles[2],
            "samples": samples, "detail": detail}


def skipped(label: str, reason: str, retry: bool = True) -> dict:
    """A measurement that could not run here (no face detector, out of memory): the table says why. ``retry``
    False: it never can under these settings (CUDA graphs on a CPU), so the table advises no rerun."""
    entry = {"label": label, "seconds": None, "skipped": reason}
    return entry if retry else {**entry, "retry": False}


@dataclass
class Peak:
    """The most memory in use during a block: bytes (None where it cannot be read) and what they count."""

    bytes: int | None = None
    kind: str = ""


PROC_STATUS, PROC_CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _resident_peak() -> int | None:
    """The process's peak resident memory (Linux VmHWM) in bytes, or None where /proc does not say."""
    with suppress(OSError):
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


@contextmanager
def peak_memory(device: torch.device) -> Iterator[Peak]:
    """Measure the peak during the block: torch's reserved memory on a GPU (what the card must hold), the
    process's resident memory on a CPU (Linux resets its peak on writing 5 to clear_refs)."""
    peak = Peak()
    if device.type == "cuda":
        synchronize(device)
        # Memory cached for earlier tasks (their activations, a finished run's CUDA graph pools) would count
        # as this block's: the peak is of what the block itself needs beyond what is in use.
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        yield peak
        synchronize(device)
        peak.bytes, peak.kind = torch.cuda.max_memory_reserved(device), "GPU memory reserved by torch"
        return
    reset = False
    with suppress(OSError):
        PROC_CLEAR_REFS.write_text("5")
        reset = True
    yield peak
    if reset:
        peak.bytes, peak.kind = _resident_peak(), "peak resident memory of the process"
