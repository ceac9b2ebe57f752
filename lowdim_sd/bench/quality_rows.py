"""Which rows a ``bench quality`` job has.

Running, the default is every row the model can run and that measures something of its own: rows naming the
looks need the model's describer, and the k=1 row needs a hypernetwork that refines (else it repeats Ours
exactly, and a table showing both would say k makes no difference). A row asked for by name that can't be
run or would repeat another is refused, so nothing is dropped silently. Tabulating (``--no-run``), the
default is the rows the results folder holds, as a run of those rows would have tabulated them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.option_words import Wording
from lowdim_sd.bench import methods as bench_methods  # METHODS read at call time: tests cut its steps
from lowdim_sd.bench.methods import find_method, get_method, model_describer

if TYPE_CHECKING:
    from lowdim_sd.bench.quality_job import QualityJob

METHODS_OPTION = Wording("--methods", "QualityJob(methods=...)")  # the rows asked for, as their reader gave them


def check_rows(job: QualityJob, run: bool = True) -> None:
    """Fill ``job.methods`` when not given, and refuse the rows given that the model can't run or that repeat."""
    if job.methods is None and not run:
        job.methods = rows_with_results(Path(job.out))
        return
    defaulted = job.methods is None
    check_described_rows(job)
    if run:
        check_repeating_rows(job, defaulted)


def check_described_rows(job: QualityJob) -> None:
    """Rows that name the looks need the model's describer: left out of the default list, refused when asked."""
    describes = model_describer(job.model) is not None
    if job.methods is None:
        job.methods = [name for name in bench_methods.METHODS if describes or not get_method(name).describe]
        return
    described = [name for name in job.methods if get_method(name).describe]
    if described and not describes:
        raise LowdimError(f"method '{described[0]}' names the looks the model's describer reads, and model "
                          f"'{job.model}' has none; leave it out of {METHODS_OPTION}")


def why_k1_repeats(hyper_config: dict, path: str | Path) -> str | None:
    """Why one hypernetwork iteration gives the same prediction as the checkpoint's own count, or None."""
    if hyper_config.get("architecture") == "retrieval":  # it returns a stored θ: nothing to refine
        return f"the hypernetwork {path} is a retrieval head, which has no refinement iterations"
    if hyper_config.get("iterations") == 1:
        return f"the hypernetwork {path} refines once (iterations 1)"
    return None


def check_repeating_rows(job: QualityJob, defaulted: bool) -> None:
    """The k=1 rows (ours-k1 and its draws) repeat their k-free row for a hypernetwork that does not refine:
    left out of the default list (``defaulted``) with a note, refused when asked for."""
    from lowdim_sd.bench.quality import shipped_hypernet

    path = job.hypernet or shipped_hypernet(job.model)
    k1 = [name for name in job.checked_methods() if _one_iteration(name)]
    if not k1 or path is None or not Path(path).is_file():  # no hypernetwork: those rows are refused later
        return
    from lowdim.hyper.storage import read_hypernet

    why = why_k1_repeats(read_hypernet(path).stored["hyper_config"], path)
    if why is None:
        return
    if not defaulted:
        raise LowdimError(f"method '{k1[0]}' would repeat '{k1[0].replace('-k1', '', 1)}' exactly: {why}; "
                          f"leave it out of {METHODS_OPTION}")
    job.methods = [name for name in job.checked_methods() if name not in k1]
    # Said by prepare once the job is known to run: a note above a bad -i's error line would bury it.
    job.left_out["ours-k1"] = f"{why}, so Ours (k=1) would repeat Ours exactly"


def _one_iteration(name: str) -> bool:
    method = get_method(name)
    return method.kind == "hyper" and method.use_hypernet and method.iterations == 1


def rows_with_results(out: Path) -> list[str]:
    """The rows with a result in ``out/results``: METHODS' order first, then the others (a weighted or drawn
    row) by name. A folder that names no row is not one of them (tabulating it would be an error)."""
    folders = [path for path in (out / "results").glob("*") if path.is_dir() and any(path.glob("*.json"))]
    names = [path.name for path in folders if find_method(path.name) is not None]
    order = list(bench_methods.METHODS)
    return sorted(names, key=lambda name: (order.index(name) if name in order else len(order), name))
