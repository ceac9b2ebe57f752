"""Running benchmark tasks in this process or in a pool of worker processes, with a progress bar.

Workers are spawned (not forked) so each gets a clean torch and, on a GPU, its own CUDA context;
several small jobs then share one accelerator well. Results are files, so nothing is lost on Ctrl-C.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_JOB = None


def _init_worker(job, threads: int) -> None:
    global _JOB
    _JOB = job
    torch.set_num_threads(threads)


def _run_in_worker(task):
    from lowdim_sd.bench.quality import run_task

    return task, run_task(_JOB, task)


def threads_per_worker(job) -> int:
    return job.threads or max(1, (os.cpu_count() or 1) // max(1, job.workers))


def run_tasks(job, tasks: list, on_done: Callable | None = None) -> None:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task("bench quality", total=len(tasks))

        def finished(task, record) -> None:
            progress.update(bar, advance=1, description=f"{task.method} {task.identity}")
            if on_done and record is not None:  # None: another process ran it
                on_done(task, record)

        if job.workers <= 1:
            from lowdim_sd.bench.quality import run_task

            for task in tasks:
                finished(task, run_task(job, task))
            return
        context = multiprocessing.get_context("spawn")
        with context.Pool(job.workers, _init_worker, (job, threads_per_worker(job))) as pool:
            try:
                for task, record in pool.imap_unordered(_run_in_worker, tasks):
                    finished(task, record)
            except KeyboardInterrupt:
                pool.terminate()
                raise
