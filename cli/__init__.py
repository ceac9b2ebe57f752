"""The ``lowdim`` command line (Typer). Commands are thin: logic lives in importable functions."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path


def omp_wait_policy(environ: Mapping[str, str], load: float | None) -> str | None:
    """The OpenMP wait policy to set before torch loads, or None to leave OpenMP's own.

    ``load`` is how many other threads are running right now (None: unknown). OpenMP threads that spin
    while waiting make torch 3-50x slower when another job holds the cores (they spin on a core the
    straggler needs); sleeping waiters avoid that but cost about 2x on an idle machine at TinyFaces'
    scale, where each operation is microseconds and waking a thread is not. So waiters sleep only when
    something else is running, and a policy the user set is kept. Benchmark workers, which share the
    cores, set it themselves.
    """
    if "OMP_WAIT_POLICY" in environ or load is None:
        return None
    return "PASSIVE" if load >= 0.75 else None


def _others_running(samples: int = 3, interval: float = 0.005) -> float | None:
    """Median count of other runnable threads over a few samples (Linux); None where it cannot be read.

    The instantaneous count, not the load average: a previous lowdim command's own load would make
    the next one run with sleeping waiters for a minute.
    """
    counts = []
    for index in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(running - 1)  # this process is one of them
        if index + 1 < samples:
            time.sleep(interval)
    return float(statistics.median(counts))


_policy = None if "OMP_WAIT_POLICY" in os.environ else omp_wait_policy(os.environ, _others_running())
if _policy:
    os.environ["OMP_WAIT_POLICY"] = _policy
