"""The whole of ``lowdim eval`` as a plain function: read the folder, load the metrics, score, report."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from lowdim.errors import LowdimError
from lowdim.option_words import counted, either, option
from lowdim.registry import get_registry
from lowdim_sd.eval.folder import EvalSet, load_eval_set
from lowdim_sd.eval.paper_metrics import PAPER_METRICS
from lowdim_sd.eval.report import EvalReport, load_metrics, notes_of, run_metrics, skipped_by_reason
from lowdim_sd.job_fields import Converted, PathArg, PathField, as_paths, job_dataclass, path_field


def metric_names(value: object, owner: str, name: str) -> tuple[str, ...]:
    """Comma text, as --metrics takes it ("face-rec,dino"; a notebook's "tinyfaces-identity" is a name, not its
    letters one by one), or the names themselves, each read as the text is (``["a,b"]`` is ``"a,b"``): either
    way an empty or repeated name is refused alike."""
    if isinstance(value, str):
        return parse_metric_names(value, owner, name)
    if not isinstance(value, Iterable):
        raise LowdimError(f"{owner}: {name}= takes metric names (comma text or a tuple of names), got a "
                          f"{type(value).__name__}")
    names = list(value)
    odd = next((item for item in names if not isinstance(item, str)), None)
    if odd is not None:
        raise LowdimError(f"{owner}: {name}= takes metric names (comma text or a tuple of names), got a "
                          f"{type(odd).__name__} among them")
    return parse_metric_names(",".join(names), owner, name)


def reference_paths(value: object, owner: str, name: str) -> tuple[Path, ...]:
    return tuple(as_paths(value, owner, name))  # one file or folder alone is one, not its characters


# Called with the number of scoring steps; returns the callback that advances by n.
ProgressFactory = Callable[[int], Callable[[int], None]]


@job_dataclass
class EvalJob:
    folder: PathField = path_field()  # a str is as good, as for every path field (lowdim_sd.job_fields)
    metrics: Converted[str | Sequence[str], tuple[str, ...]] = Converted(convert=metric_names, default=PAPER_METRICS)
    # Replace the prompts file's shared references: files or folders, or one alone
    references: Converted[PathArg | Iterable[PathArg], tuple[Path, ...]] = Converted(convert=reference_paths,
                                                                                     default=())
    token: str | None = None  # the identifier CLIP-T removes (default: the prompts file's)
    crop: bool = False  # crop references to the face before scoring
    crop_size: int = 512
    margin: float = 0.6
    device: str = "auto"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per metric, e.g. {"dino": {"model": ...}}
    chunk: int = 8  # samples per metric call: how often the progress bar moves


def parse_metric_names(text: str, owner: str | None = None, field: str = "metrics") -> tuple[str, ...]:
    """``"face-rec, dino"`` -> ("face-rec", "dino"); empty or repeated names are errors. They name the setting as
    ``owner(field=...)`` from Python, ``--metrics`` on the command line; without an ``owner`` (the web UI, which
    rewrites the flag into its own words; bench quality) always ``--metrics``."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    asked = option(field, owner, "--metrics") if owner else "--metrics"
    if not names:
        raise LowdimError(f"{asked} is empty; give a comma list such as face-rec,dino,clip-i,clip-t")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LowdimError(f"{asked} names '{repeated[0]}' twice")
    return names


def run_eval(job: EvalJob, progress: ProgressFactory | None = None) -> EvalReport:
    """Score ``job.folder``. Skipped metrics and images, and every warning, are in the report.

    Raises LowdimError when the folder can't be read, or when no requested metric could be loaded.
    """
    check_crop(job.crop, job.crop_size, job.margin)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refuse_a_folder_being_written(job.folder)
        data = load_eval_set(job.folder, job.references, job.token, job.crop, job.crop_size, job.margin)
        refuse_a_folder_being_written(job.folder)  # a run that started while the pictures were read
        metrics, skipped = load_metrics(job.metrics, job.options, {"device": job.device})
    if not metrics:
        reasons = "; ".join(f"{names}: {reason}" for names, reason in skipped_by_reason(skipped))
        raise LowdimError(f"no metric could run: {reasons}")
    advance = progress(len(metrics) * len(data.samples)) if progress else None
    report = run_metrics(data.samples, metrics, skipped, job.chunk, advance)
    report.settings, report.references = run_settings(job, data, metrics), data.references
    report.skipped_images = data.skipped
    report.smallest_side = min((min(sample.image.size) for sample in data.samples), default=None)
    report.notes = list(dict.fromkeys([*notes_of(caught), *report.notes]))
    return report


def run_settings(job: EvalJob, data: EvalSet, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What produced a report's numbers, as eval.json's ``settings`` records it: the model each metric that ran
    read (its ``model_source``: a path resolved, a hub id as named), the identifier(s) CLIP-T removed, the
    references' crop and the shared references' real paths. Two reports made with other embedders or references
    are told apart by it."""
    tokens = {"token": data.token} | ({"other_tokens": list(data.other_tokens)} if data.other_tokens else {})
    crop = {"size": job.crop_size, "margin": job.margin} if job.crop else None
    models = {name: metric_source(metric) for name, metric in metrics.items()}
    return {"models": models, **tokens, "crop": crop, "references": list(data.shared)}


def metric_source(metric: object) -> str | None:
    """The model a metric says it read (``lowdim.metrics``: an optional ``model_source``); None where it says
    none."""
    source = getattr(metric, "model_source", None)
    return as_recorded(str(source)) if source else None


def as_recorded(model: str) -> str:
    """A local file or folder as its real path (``~`` expanded, links followed); a hub id as named."""
    from lowdim.paths import expand_user

    path = expand_user(model)
    try:
        return str(path.resolve()) if path.exists() else model
    except (OSError, RuntimeError):  # a link loop: as named
        return model


def refuse_a_folder_being_written(folder: Path) -> None:
    """generate replaces its pictures one by one, then prompts.json: a folder it holds mixes two runs' pictures."""
    from lowdim_sd import runs
    from lowdim_sd.run_lock import live_holder

    if (holder := live_holder(folder)) is not None:
        lock = Path(folder) / runs.LOCK
        raise LowdimError(f"{folder}: another run is writing it ({holder}); score it once that run has ended (if "
                          f"that run is gone, delete {lock})")


MIN_CROP_SIZE = 8  # px, as crop_face has it
# px: the metrics read 224 px at most, and a side of 10^5 would ask for tens of GB before failing
MAX_CROP_SIZE = 4096


def check_crop(crop: bool, crop_size: int, margin: float, owner: str = "EvalJob") -> None:
    """A margin or size no crop can use is one line, from the CLI and from Python alike (each naming the setting
    as its reader gave it: ``--margin``, ``EvalJob(margin=...)``), with the crop off too: a Python caller passing
    one means it, and the command refuses either without --crop before this."""
    from lowdim_sd.faces import check_crop_margin  # as personalize and precompute bound it: 0 to MAX_MARGIN

    check_crop_margin(margin, option("margin", owner))
    if not MIN_CROP_SIZE <= crop_size <= MAX_CROP_SIZE:
        raise LowdimError(f"{option('crop_size', owner)} must be {MIN_CROP_SIZE} to {MAX_CROP_SIZE} pixels (the side "
                          f"of the face crop), got {crop_size}")


TINYFACES_METRICS = ("tinyfaces-identity", "tinyfaces-style", "tinyfaces-image")
SMALL_SIDE = 64  # px: images this small are TinyFaces', which the paper's metrics (face detector, ViTs) can't read


def recorded_model(folder: Path) -> str | None:
    """The model ``lowdim generate`` recorded as having drawn ``folder``'s pictures (prompts.json's
    ``settings.model``); None for a prompts file made by hand, or one that can't be read (scoring says why)."""
    from lowdim import json_text

    try:
        record = json_text.loads((Path(folder) / "prompts.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    settings = record.get("settings") if isinstance(record, dict) else None
    model = settings.get("model") if isinstance(settings, dict) else None
    return model if isinstance(model, str) and model.strip() else None


MERGES_FOLLOWED = 4  # a merge of a merge names the first as its base; a loop of records must end


def merged_base(model: str) -> str | None:
    """The base model recorded by the merge ``model`` is (``lowdim merge``'s single file: its header; its diffusers
    folder: the record file beside it), read without loading anything; None for any other model."""
    from lowdim.paths import expand_user
    from lowdim_sd.merged_model import read_merge_record

    path = expand_user(model)
    try:
        record = read_merge_record(path) if path.exists() else None
    except OSError:  # a record that can't be read: the pictures are still there to score
        return None
    base = record.get("base_model") if record else None
    return base if isinstance(base, str) and base.strip() else None


def metrics_model(model: str | None) -> str | None:
    """The model whose pictures ``model`` draws, as the metrics see them: a merge's recorded base model (merged
    weights draw at the base's resolution), followed through merges of merges; else ``model`` itself."""
    for _ in range(MERGES_FOLLOWED):
        base = merged_base(model) if model is not None else None
        if base is None or base == model:
            return model
        model = base
    return model


def model_metrics(model: str | None) -> tuple[str, ...]:
    """The metrics that can read ``model``'s pictures: TinyFaces' own for its 32 px ones (the paper's face detector
    and ViTs find nothing in them), else the paper's four; an unknown or unregistered model gets the paper's. A
    merged model's are those of the base model its merge record names."""
    from lowdim_sd.registered_models import sd_backend

    model = metrics_model(model)
    try:
        backend = sd_backend(model) if model is not None else None
    except LowdimError:  # a model this install lacks: the pictures are still there to score
        backend = None
    tiny = backend is not None and backend.name.startswith("tinyfaces")
    if tiny and set(TINYFACES_METRICS) <= set(get_registry().metrics):
        return TINYFACES_METRICS
    return tuple(PAPER_METRICS)


def refuse_a_missing_plugins_pictures(folder: PathArg, model: str | None) -> None:
    """Pictures a first-party plugin's model drew (prompts.json says tinyfaces), scored by default where that plugin
    is not installed: one line naming the plugin, before any metric loads. The paper's four, the fallback for an
    unknown model, find nothing in TinyFaces' 32 px pictures, and their errors would send the user after dlib and
    gigabytes of ViTs. A merge is judged by its recorded base model, as ``model_metrics`` judges it."""
    from lowdim.paths import expand_user
    from lowdim.space_packages import absent_plugin_words
    from lowdim_sd.registered_models import FIRST_PARTY_MODELS

    base = metrics_model(model)
    plugin = FIRST_PARTY_MODELS.get(base.lower()) if base is not None else None
    if base is None or plugin is None or base.lower() in get_registry().backends or expand_user(base).exists():
        return
    merge = "" if base == model else f" (a merge of {base}, its record says)"
    raise LowdimError(f"{Path(folder) / 'prompts.json'} says {model} drew these pictures{merge}; its metrics come "
                      f"with {absent_plugin_words(plugin)}")


def nothing_scored(report: EvalReport, requested: tuple[str, ...]) -> str | None:
    """The error line when no metric scored a single image (None when any did), with the likely fix."""
    if any(result.summary.scored for result in report.results):
        return None
    count = len(report.images)
    asked_nothing = [r.name for r in report.results if r.summary.not_asked == count]
    if count and len(asked_nothing) == len(report.results):
        return (f"{', '.join(asked_nothing)} asked nothing of any of the {counted(count, 'image')}: no prompt is one "
                f"{'it scores' if len(asked_nothing) == 1 else 'they score'} (tinyfaces-style: a prompt naming "
                f"one of TinyFaces' styles, such as 'a photo of a [V] face')")
    ran = ", ".join(result.name for result in report.results)
    line = f"no metric scored any of the {counted(count, 'image')} (ran: {ran}); the notes above say why"
    available = set(get_registry().metrics)
    small = report.smallest_side is not None and report.smallest_side <= SMALL_SIDE
    if small and set(TINYFACES_METRICS) <= available and not set(requested) & set(TINYFACES_METRICS):
        tiny = ",".join(TINYFACES_METRICS)
        line += (f"; these are {report.smallest_side} px images, as TinyFaces draws them: score them with "
                 f"{either(f'--metrics {tiny}', f'EvalJob(metrics={tiny!r})')}")
    return line
