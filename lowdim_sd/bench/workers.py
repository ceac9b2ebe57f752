"""Running benchmark tasks in this process or in a pool of worker processes, with a progress bar.

Workers are spawned (not forked) so each gets a clean torch and, on a GPU, its own CUDA context;
several small jobs then share one accelerator well. Results are files, so nothing is lost on Ctrl-C.
The caller passes the function that runs one task (a module-level one, so a spawned worker can
unpickle it), which keeps this module free of what a task is.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable
from typing import Any

import torch

RunTask = Callable[[Any, Any], "dict | None"]  # (job, task) -> its record, or None when another process ran it
_JOB = None
_RUN: RunTask | None = None


def _init_worker(job, threads: int, run: RunTask) -> None:
    global _JOB, _RUN
    _JOB, _RUN = job, run
    torch.set_num_threads(threads)


def _run_in_worker(task):
    return task, _RUN(_JOB, task)


def threads_per_worker(job: Any) -> int:
    return job.threads or max(1, (os.cpu_count() or 1) // max(1, job.workers))


def run_tasks(job: Any, tasks: list, run: RunTask, on_done: Callable | None = None) -> None:
    from lowdim_sd.runs import progress

    with progress(len(tasks), "bench quality", loss=False) as advance:

        def finished(task: Any, record: dict | None) -> None:
            advance(label=f"{task.method} {task.identity}")
            if on_done and record is not None:  # None: another process ran it
                on_done(task, record)

        if job.workers <= 1:
            if job.threads:  # in this process, as a worker would set it
                torch.set_num_threads(job.threads)
            for task in tasks:
                finished(task, run(job, task))
            return
        context = multiprocessing.get_context("spawn")
        with sleeping_waiters(), context.Pool(job.workers, _init_worker, (job, threads_per_worker(job), run)) as pool:
            try:
                for task, record in pool.imap_unordered(_run_in_worker, tasks):
                    finished(task, record)
            except KeyboardInterrupt:
                pool.terminate()
                raise


@contextlib.contextmanager
def sleeping_waiters():
    """Workers share the cores, so their OpenMP threads must sleep, not spin, while they wait (a spinning
    waiter holds a core another worker needs); spawned workers read this when their torch loads."""
    before = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
