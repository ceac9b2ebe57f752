"""Tables, the gallery and the trade-off picture of ``lowdim bench quality``: mean ± standard error over identities.

A cell is computed in two stages, as in the paper's per-identity evaluation: average a metric over
the prompts of one identity (misses left out and counted), then take the mean and standard error
of those per-identity averages across identities.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.files import atomic_write
from lowdim.option_words import option
from lowdim_sd.bench.methods import method_label
from lowdim_sd.bench.stored_values import printable
from lowdim_sd.markdown_cells import markdown_cell
from lowdim_sd.recorded_paths import recorded_path

if TYPE_CHECKING:
    from lowdim_sd.bench.quality_job import QualityJob


@dataclass
class Cell:
    mean: float  # NaN without values (n = 0)
    se: float  # 0.0 over one value, where it is undefined: shown without ±, written null; frontier.png draws no bar
    n: int

    def text(self, digits: int = 3) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f} (n=1)" if self.n else "–"
        return f"{self.mean:.{digits}f} ± {self.se:.{digits}f}"

    def as_json(self) -> dict:
        """JSON proper: null, not NaN, where there is no mean or no standard error."""
        return {"mean": self.mean if self.n else None, "se": self.se if self.n > 1 else None, "n": self.n}


@dataclass
class Row:
    method: str
    label: str
    cells: dict[str, Cell] = field(default_factory=dict)  # metric name -> cell
    seconds: Cell | None = None
    bytes: int = 0
    identities: int = 0
    misses: int = 0
    pictures: int = 0  # scored or not: identities x prompts
    not_asked: dict[str, int] = field(default_factory=dict)  # metric -> pictures it had no question for


def mean_se(values: list[float]) -> Cell:
    n = len(values)
    if n == 0:
        return Cell(float("nan"), float("nan"), 0)
    mean = sum(values) / n
    if n == 1:
        return Cell(mean, 0.0, 1)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Cell(mean, math.sqrt(variance / n), n)


def per_identity_mean(scores: list[float | None]) -> float | None:
    kept = [s for s in scores if s is not None]
    return sum(kept) / len(kept) if kept else None


def aggregate(results: list[dict], methods: list[str]) -> tuple[list[Row], dict[str, str]]:
    """Rows in ``methods`` order and the metric columns {name: heading}: the results' ``columns``, which
    ``read_result`` makes this lowdim's headings of the metrics the folder's settings list, never a file's."""
    columns: dict[str, str] = {}
    for record in results:
        columns.update(record.get("columns", {}))
    rows = []
    for name in methods:
        mine = [r for r in results if r["method"] == name]
        # by content where every result records it: one path retrained between runs is two networks; else by where
        # each path leads, however it was spelled (an older result's path, a newer one's name of a shipped network)
        by_digest = all(r.get("hypernet_sha256") for r in mine if r.get("hypernet") is not None)
        hypernets = {r.get("hypernet_sha256") if by_digest else recorded_path(r.get("hypernet")) for r in mine}
        if len(hypernets) > 1:
            raise LowdimError(f"results of '{name}' were made with different hypernetworks "
                              f"({', '.join(sorted(map(str, hypernets)))}); delete results/{name} and rerun")
        row = Row(name, method_label(name), identities=len(mine))
        for metric in columns:
            per_identity = [per_identity_mean(r["scores"].get(metric, [])) for r in mine]
            row.cells[metric] = mean_se([v for v in per_identity if v is not None])
            not_asked = sum(r.get("not_asked", {}).get(metric, 0) for r in mine)
            row.misses += sum(s is None for r in mine for s in r["scores"].get(metric, [])) - not_asked
            row.not_asked |= {metric: not_asked} if not_asked else {}
            row.pictures = max(row.pictures, sum(len(r["scores"].get(metric, [])) for r in mine))
        row.seconds = mean_se([r["seconds"] for r in mine])
        row.bytes = round(sum(r["bytes"] for r in mine) / len(mine)) if mine else 0
        rows.append(row)
    return rows, columns


def human_bytes(n: int) -> str:
    """The file column's size: bytes below 1000, else to a tenth of the largest unit it reaches, or that the unit
    below would print as 1000.0 (999,999 bytes is "1.0 MB", never "1000.0 KB")."""
    if n == 0:
        return "0"
    shown = f"{n} B"
    for unit, size in (("KB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n >= size or f"{n / (size / 1000):.1f}" == "1000.0":
            shown = f"{n / size:.1f} {unit}"
    return shown


def table_rows(rows: list[Row], columns: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    header = ["Method", *columns.values(), "s / subject", "file (fp32)", "n"]  # personalize writes fp16: half
    body = [[row.label, *(row.cells[m].text() for m in columns),
             row.seconds.text(2) if row.seconds else "–",
             human_bytes(row.bytes) if row.identities else "–",  # no result: no file, not a 0-byte one
             str(row.identities)]
            for row in rows]
    return header, body


def not_asked_notes(rows: list[Row], columns: dict[str, str]) -> list[str]:
    """A line per metric that had no question for some pictures, so its "–" or its fewer scores read right."""
    notes = []
    for metric, heading in columns.items():
        count = sum(row.not_asked.get(metric, 0) for row in rows)
        if count:
            notes.append(f"{heading} asked nothing of {count} of {sum(row.pictures for row in rows)} pictures: "
                         f"their prompts give it no question (as a prompt naming no style gives a style metric "
                         f"none); they are not misses")
    return notes


def markdown(rows: list[Row], columns: dict[str, str]) -> str:
    """table.md: every cell escaped, whoever named the rows and metrics (a plugin's heading, a folder's name)."""
    header, body = table_rows(rows, columns)
    header, body = [markdown_cell(cell) for cell in header], [[markdown_cell(cell) for cell in cells] for cells in body]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    notes = not_asked_notes(rows, {metric: markdown_cell(heading) for metric, heading in columns.items()})
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def as_json(rows: list[Row], columns: dict[str, str]) -> dict:
    return {"columns": columns, "rows": [
        {"method": r.method, "label": r.label, "identities": r.identities, "misses": r.misses, "bytes": r.bytes,
         "seconds": r.seconds.as_json() if r.seconds else None,
         "metrics": {m: c.as_json() for m, c in r.cells.items()}} | ({"not_asked": r.not_asked} if r.not_asked else {})
        for r in rows]}


def gallery(out: Path, results: list[dict], methods: list[str], prompts: list[str], identities: list[str],
            prompt_indices: list[int], path: Path) -> Path:
    """Rows: identities (reference first); columns: each method × the chosen prompts."""
    from lowdim_sd.grid import save_grid

    images, captions = [], []
    for row, identity in enumerate(identities):
        pictures = identity_pictures(out, results, identity, methods, prompt_indices)
        images += [read_picture(picture) for picture in pictures]
        captions.append("reference" if row == 0 else "")
        captions += [f"{method_label(method)}: {prompts[k]}" if row == 0 else "" for method in methods
                     for k in prompt_indices]
    return save_grid(path, images, captions, ncol=1 + len(methods) * len(prompt_indices), max_lines=5)


def reference_path(out: Path, reference: str) -> Path:
    """Where a result's reference image is: a run records it relative to the results folder (so a folder sent
    with its references, or tabulated from elsewhere, finds them); an older result, relative to the folder its
    run was started in; an absolute path where it says, anywhere on the disk."""
    path = Path(reference)
    inside = Path(out) / path
    return inside if reference and not path.is_absolute() and inside.is_file() else path


def identity_pictures(out: Path, results: list[dict], identity: str, methods: list[str],
                      prompt_indices: list[int]) -> list[Path]:
    """An identity's row of the gallery: its reference, then each method's images of the chosen prompts."""
    reference = next(r["reference"] for r in results if r["identity"] == identity)
    return [reference_path(out, reference), *(Path(out) / "images" / method / identity / f"{k:02d}.png"
                                              for method in methods for k in prompt_indices)]


def read_picture(path: Path):
    """The picture at ``path`` in RGB, or None with a warning naming it (not a picture, cut short, unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        warnings.warn(f"{printable(path)} cannot be read as a picture ({printable(error)}); gallery.png is drawn "
                      f"without it", stacklevel=4)
        return None


def drawn_here(out: Path, path: Path) -> bool:
    """Whether an image of OUT/images is one this folder holds: a link out of it is no picture a run drew."""
    images = (Path(out) / "images").resolve()
    if path.resolve().is_relative_to(images):
        return True
    warnings.warn(f"{printable(path)} is a link to {printable(path.resolve())}, outside {printable(images)}: not a "
                  f"picture a run drew, so gallery.png is drawn without it", stacklevel=4)
    return False


def write_reports(job: QualityJob, results: list[dict], rows: list[Row], columns: dict[str, str],
                  gallery_identities: int | None = None, gallery_prompts: list[int] | None = None,
                  gallery_methods: list[str] | None = None,
                  axis_of: Callable[[str], str | None] | None = None) -> list[Path]:
    """OUT/table.md, OUT/table.json, OUT/frontier.png (with a subject and a prompt metric) and, when there
    are images, OUT/gallery.png. ``axis_of(metric)`` says a metric's axis (default: what its plugin declares);
    the gallery's settings not given are the job's, which ``check_job`` checked; it shows ``gallery_methods``
    (default: the rows with results)."""
    from lowdim_sd.bench.frontier import registered_axis
    from lowdim_sd.bench.quality import settings, write_json

    out = Path(job.out)
    gallery_methods = job.gallery_methods if gallery_methods is None else gallery_methods
    rows_run = job.checked_methods()
    shown = [m for m in gallery_methods if m in rows_run] if gallery_methods else \
        [m for m in rows_run if any(r["method"] == m for r in results)]
    identities = job.gallery_identities if gallery_identities is None else gallery_identities
    asked = job.gallery_prompts if gallery_prompts is None else gallery_prompts
    prompts = job.checked_prompts() if asked is None or asked else []
    # Checked as check_job checks them (a job it never saw, or numbers given here), before any file is written
    numbers = checked_prompt_numbers(asked, prompts, "QualityJob" if gallery_prompts is None else "write_reports")
    atomic_write(out / "table.md", lambda temp: Path(temp).write_text(markdown(rows, columns)))
    write_json(out / "table.json", {"settings": settings(job), **as_json(rows, columns)}, allow_nan=False)
    paths = [out / "table.md", out / "table.json"]
    paths += write_frontier(out, rows, columns, axis_of or registered_axis)
    return paths + write_gallery(out, prompts, results, shown, identities, numbers)


DEFAULT_GALLERY_PROMPTS = (0, 3, 5)


def check_gallery(job: QualityJob) -> None:
    """Refuse a gallery setting gallery.png could not be drawn with, naming it as its reader gave it, and fill in
    the default prompt numbers: 0, 3 and 5 of the job's prompts, those there are (an empty list: no gallery)."""
    from lowdim_sd.bench.methods import parse_methods

    if job.gallery_identities < 1:
        raise LowdimError(f"{option('gallery_identities', 'QualityJob')} must be at least 1; got "
                          f"{job.gallery_identities}")
    job.gallery_prompts = checked_prompt_numbers(job.gallery_prompts, job.checked_prompts(), "QualityJob")
    try:
        parse_methods(",".join(job.gallery_methods or []))
    except LowdimError as error:
        raise LowdimError(f"{option('gallery_methods', 'QualityJob')}: {error}") from None


def checked_prompt_numbers(asked: list[int] | None, prompts: list[str], owner: str) -> list[int]:
    """The gallery's columns: ``asked``, each refused by name (``owner(gallery_prompts=...)``) unless a number of
    one of ``prompts`` (a str or bool is none, whatever its hint), or by default 0, 3 and 5 of those there are.
    The one check of ``check_gallery`` and ``write_reports``."""
    if asked is None:  # the default fits any prompt list; only numbers asked for must exist
        return [k for k in DEFAULT_GALLERY_PROMPTS if k < len(prompts)]
    for number in asked:
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < len(prompts):
            raise LowdimError(f"{option('gallery_prompts', owner)}: '{number}' is not a prompt number (0 to "
                              f"{len(prompts) - 1})")
    return list(asked)


def write_frontier(out: Path, rows: list[Row], columns: dict[str, str],
                   axis_of: Callable[[str], str | None]) -> list[Path]:
    """OUT/frontier.png, or a line saying why not where the metrics have both axes."""
    from lowdim_sd.bench.frontier import draw_frontier, frontier_axes, points

    # A metric with no score and no picture it was not asked of never ran (unavailable here): the next of its kind
    # takes its axis, and it is named only when no other can.
    measured = [m for m in columns if any(row.cells[m].n or row.not_asked.get(m) for row in rows)]
    axes = frontier_axes(measured, axis_of) or frontier_axes(list(columns), axis_of)
    if axes is None:
        return []
    if points(rows, *axes):
        return [draw_frontier(rows, *axes, columns, out / "frontier.png")]
    unasked = [m for m in axes if all(row.not_asked.get(m, 0) == row.pictures for row in rows)]
    why = (f"{columns[unasked[0]]} asked nothing of any picture (no prompt is one it has a question for)" if unasked
           else f"no row has scores in both {columns[axes[0]]} and {columns[axes[1]]}")
    stale = f"; {out / 'frontier.png'} is from an earlier run" if (out / "frontier.png").is_file() else ""
    warnings.warn(f"no frontier.png: {why}{stale}", stacklevel=3)
    return []


def write_gallery(out: Path, prompts: list[str], results: list[dict], shown: list[str], identities: int,
                  prompt_indices: list[int]) -> list[Path]:
    """OUT/gallery.png of the first ``identities`` whose reference and images of the ``shown`` rows are there and
    can be read: a picture that cannot is named in a warning and its identity left out."""
    chosen = [k for k in prompt_indices if 0 <= k < len(prompts)]
    if not (results and chosen):
        return []
    # Scores can outlive images (the results archive keeps only the JSON), and a tabulation may run without the
    # reference folder, so look for the files themselves.
    found = {identity: identity_pictures(out, results, identity, shown, chosen)
             for identity in sorted({r["identity"] for r in results})}
    referenced = [identity for identity, pictures in found.items() if pictures[0].is_file()]
    pictured = [identity for identity in referenced if all(path.is_file() for path in found[identity][1:])]
    readable: list[str] = []
    for identity in pictured:
        if len(readable) < identities and all(drawn_here(out, path) for path in found[identity][1:]) and all(
                read_picture(path) is not None for path in found[identity]):
            readable.append(identity)
    if readable:
        return [gallery(out, results, shown, prompts, readable, chosen, out / "gallery.png")]
    stale = f"; {out / 'gallery.png'} is from an earlier run" if (out / "gallery.png").is_file() else ""
    warnings.warn(f"no gallery: {why_no_gallery(out, results, shown, referenced, pictured)}{stale}", stacklevel=3)
    return []


def why_no_gallery(out: Path, results: list[dict], shown: list[str], referenced: list[str],
                   pictured: list[str]) -> str:
    """Which of a gallery's pictures are missing: the references (found where the results say) or the images."""
    if not referenced:
        return (f"no identity has its reference image where its results say (such as "
                f"{printable(results[0]['reference']) or 'none'}, read relative to {out} or the working folder); "
                f"put the references there to draw it")
    if not pictured:
        return (f"no identity has its reference image and images in {out / 'images'} for every shown method "
                f"({', '.join(shown)}): the references are there; rerun those rows to make the images")
    return "no identity's pictures could all be read (each named above)"
