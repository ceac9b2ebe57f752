"""The Evaluate tab's scoring: ``lowdim eval`` on the dropped pictures, copied under their own names into a
folder of its own, and everything eval says about that folder said in the page's terms; and the metrics the tab
starts with for the model served."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.option_words import command_line

if TYPE_CHECKING:
    from lowdim_sd.eval.job import EvalJob
    from lowdim_sd.eval.report import EvalReport

PROMPTS = "prompts.json"  # the prompts file Evaluate writes beside the pictures it scores


def scored(job: EvalJob, images: list[Path], prompt: str, progress: Callable) -> str:
    """Score ``images`` as copies in ``job.folder``, each under its own file name, with the prompts file this
    writes; the report and any error say the folder in the page's terms."""
    from lowdim_sd.eval.job import run_eval

    entries = []
    for name, path in zip(own_names(images), images, strict=True):
        shutil.copyfile(path, job.folder / name)
        entries.append({"image": name, "prompt": prompt})
    (job.folder / PROMPTS).write_text(json.dumps({"images": entries, "token": job.token}))
    try:
        report = run_eval(job, progress)
    except LowdimError as error:
        said = _in_asked_terms(str(error), job)
        raise (error if said == str(error) else LowdimError(said)) from None
    markdown = _in_page_words(report, job).to_markdown().replace("# lowdim eval\n", "", 1)
    return _nothing_scored_line(report, job) + markdown


def _in_page_words(report: EvalReport, job: EvalJob) -> EvalReport:
    """The report's own text (notes, skip reasons, left-out names) in the page's terms, said before it becomes
    markdown, which escapes it: a picture by its own name, the reference photo by its own, not by the folders
    they were scored from."""
    def said(text: str) -> str:
        for reference in job.references:
            for folder in sorted({str(Path(reference).parent), str(Path(reference).resolve().parent)}, key=len,
                                 reverse=True):
                text = text.replace(f"{folder}/", "")
        return _in_asked_terms(text, job)

    return replace(report, notes=[said(note) for note in report.notes],
                   skipped_images=[said(name) for name in report.skipped_images],
                   skipped_metrics={name: said(reason) for name, reason in report.skipped_metrics.items()})


def _in_asked_terms(text: str, job: EvalJob) -> str:
    """Eval's words said of this job: its folder as the page's controls, a metric's advice naming only the
    metrics the Metrics box asked for."""
    from lowdim_sd.ui.checks import clip_advice

    return clip_advice(_without_folder(text, job.folder), job.metrics)


def _nothing_scored_line(report: EvalReport, job: EvalJob) -> str:
    """Eval's line when no metric scored a picture (``lowdim eval`` exits 1 with it), with its fix in the page's
    terms, as the report's first line: the table stays, since its notes say why each picture was missed."""
    from lowdim_sd.eval.job import nothing_scored
    from lowdim_sd.ui.checks import in_page_terms

    with command_line():  # the CLI's words, which the page's terms rewrite
        line = nothing_scored(report, tuple(job.metrics))
    if line is None:
        return ""
    line = in_page_terms(_without_folder(line, job.folder)).replace("the notes above", "the notes below")
    return f"**{line}**\n\n"


def own_names(paths: list[Path]) -> list[str]:
    """Each picture's own file name, as the report names it; a name taken (twice dropped, or the prompts file's)
    gets -2, -3 and so on. Compared without case: a file system may not tell Face.png from face.png."""
    taken, names = {name.lower() for name in (PROMPTS, "prompts.csv")}, []
    for path in paths:
        name, number = path.name, 2
        while name.lower() in taken:
            name, number = f"{path.stem}-{number}{path.suffix}", number + 1
        taken.add(name.lower())
        names.append(name)
    return names


def _without_folder(text: str, folder: Path) -> str:
    """Eval's words about the folder this studio wrote, said as the page's: a picture by its own name, the
    prompts file (written from the page's Their prompt and Identifier boxes) by them, the folder as the Generated
    pictures it holds."""
    for spelling in sorted({str(folder), str(folder.resolve())}, key=len, reverse=True):
        text = text.replace(f"{spelling}/{PROMPTS}", "Their prompt and Identifier").replace(f"{spelling}/", "")
        text = text.replace(spelling, "the Generated pictures")
    return text.replace(f"listed in {PROMPTS}", "dropped")


def metric_names(box: str, model: str) -> tuple[str, ...]:
    """The Metrics box's names; a box with none in it (emptied, or only commas and spaces) means the metrics it
    started with for ``model`` (``metrics_for``)."""
    from lowdim_sd.eval.job import parse_metric_names

    return parse_metric_names(box) if box.replace(",", "").strip() else metrics_for(model)


def metrics_for(model: str) -> tuple[str, ...]:
    """The Evaluate tab's metrics for the model the page serves, as `lowdim eval` picks them for a folder's
    recorded model: TinyFaces' own for its 32 px pictures, else the paper's four."""
    from lowdim_sd.eval.job import model_metrics

    return model_metrics(model)
