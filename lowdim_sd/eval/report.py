"""Run registered metrics over samples and write the table: eval.json (every score) and eval.md.

Metrics come from the registry (``register_metrics`` hook), so plugin metrics such as
``tinyfaces-identity`` run exactly like the paper's four. A metric whose model can't be loaded is
skipped with its reason; warnings raised while loading or scoring (no face found, an unreadable
image) become the report's notes. In a notebook a report shows as one line of its means (``repr``) and as
the table ``lowdim eval`` prints (``_repr_html_``).
"""

from __future__ import annotations

import html
import inspect
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lowdim.errors import LowdimError
from lowdim.files import atomic_write
from lowdim.metrics import Metric, MetricUnavailable, Sample, Summary, applies, summarize
from lowdim.option_words import counted, option
from lowdim_sd.markdown_cells import markdown_cell

# Errors a metric factory raises when its model files are broken; a plugin's other errors are bugs.
_LOAD_ERRORS = (OSError, ValueError, RuntimeError)

# Metrics lowdim's own plugins register, by the distribution that brings each (as FIRST_PARTY_MODELS is for
# models, lowdim_sd.registered_models): a wheel install has them only once that plugin is installed.
FIRST_PARTY_METRICS = dict.fromkeys(("tinyfaces-identity", "tinyfaces-style", "tinyfaces-image"), "lowdim-tinyfaces")


@dataclass
class MetricResult:
    name: str
    column: str
    scores: list[float | None]
    asked: list[bool] | None = None  # False where the metric has no question for the image (None: all asked)

    @property
    def summary(self) -> Summary:
        return summarize(self.scores, self.asked)

    def shown(self, index: int) -> str:
        """One image's cell: its score, "miss", or "n/a" where the metric asked nothing of it."""
        if self.asked is not None and not self.asked[index]:
            return "n/a"
        return _fmt(self.scores[index])


@dataclass
class EvalReport:
    """What ``lowdim eval`` found: one result per metric that ran, and why the others did not."""

    images: list[str]
    prompts: list[str]
    results: list[MetricResult]
    skipped_metrics: dict[str, str] = field(default_factory=dict)
    skipped_images: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    smallest_side: int | None = None  # of the generated images, in pixels: tells TinyFaces' 32 px ones apart
    # What produced the numbers (``job.run_settings``): each metric's model, the token, the crop, the shared
    # references; and each image's references (real paths), written per image only where they are not those.
    settings: dict[str, Any] = field(default_factory=dict)
    references: list[tuple[str, ...]] = field(default_factory=list)

    def __repr__(self) -> str:  # a notebook's line: the means, not every score
        return report_repr(self)

    def _repr_html_(self) -> str:  # a notebook cell's view: the table `lowdim eval` prints
        return report_html(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "metrics": {r.name: {"column": r.column, **vars(r.summary)} for r in self.results},
            "skipped_metrics": self.skipped_metrics,
            "skipped_images": self.skipped_images,
            "images": [self._image_record(i, name) for i, name in enumerate(self.images)],
            "notes": self.notes,
        }

    def _image_record(self, index: int, name: str) -> dict[str, Any]:
        scores = {r.name: r.scores[index] for r in self.results}
        record = {"image": name, "prompt": self.prompts[index], "scores": scores}
        not_asked = [r.name for r in self.results if r.asked is not None and not r.asked[index]]
        own = list(self.references[index]) if index < len(self.references) else None
        differs = own is not None and own != list(self.settings.get("references", []))
        return record | ({"not_asked": not_asked} if not_asked else {}) | ({"references": own} if differs else {})

    def to_markdown(self, settings: bool = False) -> str:
        """The tables (the Evaluate tab shows them); ``settings``: with the line of what produced the numbers above
        them, as eval.md has it (a report built by hand, with no settings, has none to say)."""
        lines = ["# lowdim eval", ""]
        if settings and self.settings:
            lines += [markdown_cell(settings_line(self.settings, self._own_references())), ""]
        if self.results:
            lines += _md_table(["", *(f"{r.column} ↑" for r in self.results)], [
                ["mean", *(_fmt(r.summary.mean, "–") for r in self.results)],
                ["scored", *(str(r.summary.scored) for r in self.results)],
                ["misses", *(str(r.summary.misses) for r in self.results)],
            ] + ([["not asked", *(str(r.summary.not_asked) for r in self.results)]]
                 if any(r.summary.not_asked for r in self.results) else []))
        # Names and reasons carry a stranger's file names: shown as the text they are, as the tables' cells are.
        left_out = [f"- {markdown_cell(f'{names} skipped: {reason}')}"
                    for names, reason in skipped_by_reason(self.skipped_metrics)]
        if self.skipped_images:
            left_out += [f"- {counted(len(self.skipped_images), 'image')} left out: "
                         f"{markdown_cell(', '.join(self.skipped_images))}"]
        lines += ["", *left_out] if left_out else []
        if self.results:
            lines += ["", "## Per image", ""]
            lines += _md_table(["image", *(r.column for r in self.results)],
                               [[name, *(r.shown(i) for r in self.results)]
                                for i, name in enumerate(self.images)])
        if self.notes:
            lines += ["", "## Notes", "", *(f"- {markdown_cell(note)}" for note in self.notes)]
        return "\n".join(lines) + "\n"


    def _own_references(self) -> int:
        """How many images were compared with other references than the shared ones."""
        shared = list(self.settings.get("references", []))
        return sum(list(own) != shared for own in self.references)


def settings_line(settings: dict[str, Any], own_references: int = 0) -> str:
    """eval.md's line of what produced the numbers: 'Scored with: models Identity …/metrics/weights; token sks;
    references …/ids/id-00000.png and 1 more; crop off (all of it in eval.json's settings)'."""
    models = [f"{name} {_short(str(model))}" for name, model in settings.get("models", {}).items()
              if model is not None]
    token = settings.get("token")
    words = [token, *settings.get("other_tokens", [])] if token else settings.get("other_tokens", [])
    shared = settings.get("references", [])
    refs = (_short(shared[0]) + (f" and {len(shared) - 1} more" if len(shared) > 1 else "")) if shared else "none"
    own = counted(own_references, "image")
    refs += f" (other ones for {own}, listed per image in eval.json)" if own_references else ""
    crop = settings.get("crop")
    cropped = f"crop {crop['size']} px, margin {crop['margin']:g}" if isinstance(crop, dict) else "crop off"
    parts = [f"models {', '.join(models) or 'none'}", f"token {', '.join(words) if words else 'none'}",
             f"references {refs}", cropped]
    return f"Scored with: {'; '.join(parts)} (all of it in eval.json's settings)"


def _short(path: str) -> str:
    """A long absolute path as its last two parts ('…/metrics/weights'); a hub id ('facebook/dino-vits16') as is."""
    parts = Path(path).parts
    return f"…/{'/'.join(parts[-2:])}" if Path(path).is_absolute() and len(parts) > 3 else path


def _fmt(value: float | None, missing: str = "miss") -> str:
    return missing if value is None else f"{value:.3f}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(markdown_cell(c) for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


# -- the notebook's views: never raising, as a display that fails would hide the cell's other output ------------


NOTES_SHOWN = 10  # as `lowdim eval` prints them; eval.md (write_report) has all


def report_repr(report: Any) -> str:
    """``EvalReport(2 images; Identity 0.250 (2 scored), Style acc – (0 scored, 2 not asked); skipped: dino)``."""
    try:
        parts = [counted(len(report.images), "image"), ", ".join(_metric_words(r) for r in report.results)]
        if report.skipped_metrics:
            parts.append(f"skipped: {', '.join(report.skipped_metrics)}")
        if report.skipped_images:
            parts.append(f"{counted(len(report.skipped_images), 'image')} left out")
        if report.notes:
            parts.append(counted(len(report.notes), "note"))
        return f"EvalReport({'; '.join(part for part in parts if part)})"
    except Exception:  # a report built by hand with odd fields: still a line, never an error
        return "EvalReport(...)"


def report_html(report: Any) -> str:
    """The table of means, scored, misses (and not asked), then the skipped metrics and the first notes."""
    try:
        return f"<div>{_table(report)}{''.join(f'<div>{html.escape(line)}</div>' for line in _lines(report))}</div>"
    except Exception:
        return f"<pre>{html.escape(report_repr(report))}</pre>"


def _metric_words(result: Any) -> str:
    summary = result.summary
    counts = [f"{summary.scored} scored"]
    if summary.misses:
        counts.append(counted(summary.misses, "miss", plural="misses"))
    if summary.not_asked:
        counts.append(f"{summary.not_asked} not asked")
    return f"{result.column} {_fmt(summary.mean, '–')} ({', '.join(counts)})"


def _table(report: Any) -> str:
    not_asked = any(result.summary.not_asked for result in report.results)
    header = ["metric", "mean ↑", "scored", "misses", *(["not asked"] if not_asked else [])]
    rows = []
    for result in report.results:
        summary = result.summary
        cells = [result.column, _fmt(summary.mean, "–"), summary.scored, summary.misses,
                 *([summary.not_asked] if not_asked else [])]
        rows.append("<tr>" + "".join(f"<td{_right(i)}>{html.escape(str(c))}</td>" for i, c in enumerate(cells))
                    + "</tr>")
    head = "<tr>" + "".join(f"<th{_right(i)}>{html.escape(name)}</th>" for i, name in enumerate(header)) + "</tr>"
    return f"<table><caption>lowdim eval</caption><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _right(column: int) -> str:
    return " style='text-align:right'" if column else ""  # numbers right-aligned, as the terminal's table has them


def skipped_by_reason(skipped: dict[str, str]) -> list[tuple[str, str]]:
    """("clip-i, clip-t", reason) for metrics skipped for the same reason (one model that would not load), in
    their order: the reason said once."""
    names: dict[str, list[str]] = {}
    for name, reason in skipped.items():
        names.setdefault(reason, []).append(name)
    return [(", ".join(group), reason) for reason, group in names.items()]


def _lines(report: Any) -> list[str]:
    lines = [f"skipped {names}: {reason}" for names, reason in skipped_by_reason(report.skipped_metrics)]
    if report.skipped_images:
        lines.append(f"{counted(len(report.skipped_images), 'image')} left out (unreadable, missing or tiny)")
    lines += [f"note: {note}" for note in report.notes[:NOTES_SHOWN]]
    if len(report.notes) > NOTES_SHOWN:
        lines.append(f"... and {len(report.notes) - NOTES_SHOWN} more notes (all of them in eval.md)")
    return lines


# -- loading metrics ----------------------------------------------------------------------------------


def _accepted(factory: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The shared options (e.g. device) that ``factory`` takes; a factory with **kwargs takes all."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def unknown_metric(name: str, registered: Sequence[str]) -> str:
    """The line for a metric name no plugin registered: a first-party plugin's metric says which plugin brings it,
    in the words a missing model gets."""
    from lowdim.plugins import PLUGINS_OFF, plugins_disabled
    from lowdim.space_packages import absent_plugin_words

    plugin = FIRST_PARTY_METRICS.get(name)
    brought = f": it comes with {absent_plugin_words(plugin)}" if plugin else \
        f": {PLUGINS_OFF}" if plugins_disabled() else ""
    return f"unknown metric '{name}'{brought}; registered: {', '.join(registered) or 'none'}"


def load_metrics(names: Sequence[str], options: dict[str, dict[str, Any]] | None = None,
                 shared: dict[str, Any] | None = None,
                 owner: str = "EvalJob") -> tuple[dict[str, Metric], dict[str, str]]:
    """Build each named metric from the registry: (loaded metrics, {skipped name: reason}).

    ``options[name]`` go to that metric's factory as given (an unknown key is an error);
    ``shared`` options (device) go to every factory that has a parameter of that name. ``owner``: the class a
    Python caller gave the names to, for the line refusing options of a metric not among them.
    """
    from lowdim.registry import get_registry

    registry, options = get_registry(), options or {}
    unknown = [n for n in names if n not in registry.metrics]
    if unknown:
        raise LowdimError(unknown_metric(unknown[0], sorted(registry.metrics)))
    for name in options:
        if name not in names:
            raise LowdimError(f"options given for metric '{name}', which is not among "
                              f"{option('metrics', owner)} {','.join(names)}")
    loaded, skipped = {}, {}
    for name in names:
        factory = registry.metrics[name].value
        kwargs = {**_accepted(factory, shared or {}), **options.get(name, {})}
        try:  # only a mismatch of the options themselves is the user's; a TypeError inside is a bug to raise
            inspect.signature(factory).bind(**kwargs)
        except TypeError as error:
            raise LowdimError(f"metric '{name}' rejected its options {options.get(name, {})}: {error}") from None
        except ValueError:  # a builtin or C factory without a signature: let the call say
            pass
        try:
            loaded[name] = factory(**kwargs)
        except MetricUnavailable as error:
            skipped[name] = str(error)
        except _LOAD_ERRORS as error:
            skipped[name] = f"its model could not be loaded: {error}".splitlines()[0]
    return loaded, skipped


# -- running ------------------------------------------------------------------------------------------


def score_all(metric: Metric, samples: Sequence[Sample], chunk: int,
              advance: Callable[[int], None] | None) -> MetricResult:
    """The metric over the samples it has a question for, ``chunk`` at a time so a progress bar can move."""
    asked = [applies(metric, sample) for sample in samples]
    scores: list[float | None] = [None] * len(samples)
    for start in range(0, len(samples), chunk):
        where = [i for i in range(start, min(start + chunk, len(samples))) if asked[i]]
        got = list(metric.score([samples[i] for i in where])) if where else []
        if len(got) != len(where):
            raise LowdimError(f"metric '{metric.name}' returned {len(got)} scores for {len(where)} images")
        for i, score in zip(where, got, strict=True):
            # A NaN (e.g. a zero feature vector) is a miss: it must not poison the mean or the JSON.
            scores[i] = None if score is None or math.isnan(float(score)) else float(score)
        if advance:
            advance(min(chunk, len(samples) - start))
    return MetricResult(metric.name, metric.column, scores, None if all(asked) else asked)


def run_metrics(samples: Sequence[Sample], metrics: dict[str, Metric], skipped_metrics: dict[str, str] | None = None,
                chunk: int = 8, advance: Callable[[int], None] | None = None) -> EvalReport:
    """Score every sample with every loaded metric; warnings raised meanwhile become notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [replace(score_all(metric, samples, chunk, advance), name=name) for name, metric in metrics.items()]
    return EvalReport(images=[s.name or f"#{i}" for i, s in enumerate(samples)],
                      prompts=[s.prompt for s in samples], results=results,
                      skipped_metrics=dict(skipped_metrics or {}), notes=notes_of(caught))


# Libraries' deprecations, and the interpreter's notes on resources the garbage collector closed (an event loop or
# file of another part of a long-lived process, such as the ui's server): none is about the pictures scored.
_LIBRARY_CHATTER = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ResourceWarning)


def notes_of(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """Warning messages for the user (not libraries' deprecation chatter), each once, in order."""
    return list(dict.fromkeys(str(w.message) for w in caught if not issubclass(w.category, _LIBRARY_CHATTER)))


def _write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))


REPORT_FILES = ("eval.json", "eval.md")


def check_report_files(out: str | os.PathLike[str], flag: str | None = None) -> None:
    """One line when ``out`` holds something in the way of a report file (a folder named eval.json, a FIFO): the
    command checks it before scoring, and ``write_report`` before writing either file, so a report is not left half
    new (a new eval.json beside an earlier run's eval.md). ``flag``: how the line names ``out`` (``--out DIR``)."""
    from lowdim.atomic import special_kind
    from lowdim_sd.runs import naming

    for name in REPORT_FILES:
        target = Path(out) / name
        kind = "a folder" if target.is_dir() else special_kind(target)
        if kind is not None:
            raise LowdimError(f"{naming(Path(out), flag)}: {target} is {kind}, where the report's {name} goes; move "
                              f"it away, or write the report into another folder")


def write_report(report: EvalReport, out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``out/eval.json`` and ``out/eval.md`` (each atomically: temp file, then rename)."""
    out = Path(out)
    check_report_files(out)
    try:  # checked before scoring; what only the writing finds (a file in its way, /proc) is still one line
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LowdimError(f"could not write the report into {out}: {error.strerror or error}") from None
    # Each write's own refusal (a full disk) is atomic_write's one line, naming the file.
    json_name, md_name = REPORT_FILES
    return (_write_text(out / json_name, json.dumps(report.to_dict(), indent=1) + "\n"),
            _write_text(out / md_name, report.to_markdown(settings=True)))
