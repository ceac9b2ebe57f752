"""``lowdim bench quality``: every method × held-out identity × prompt, scored by registered metrics.

One job is (method, identity): load the model, personalize it from the identity's single reference
image, generate one image per prompt with fixed seeds, score them. Each job writes its own result
file, so an interrupted run resumes where it stopped and ``--workers`` processes can share the work.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lowdim.errors import LowdimError
from lowdim.files import atomic_write
from lowdim.metrics import Metric, MetricUnavailable, Sample
from lowdim.option_words import either, option
from lowdim_sd.bench.methods import (
    Personalized,
    check_hypernet_header,
    get_method,
    parse_methods,
    personalize_subject,
    trained_row,
)
from lowdim_sd.bench.quality_job import DEFAULT_METRICS as DEFAULT_METRICS  # read from here by callers
from lowdim_sd.bench.quality_job import QualityJob, Task, check_words
from lowdim_sd.bench.quality_rows import check_rows
from lowdim_sd.bench.report import check_gallery
from lowdim_sd.bench.stored import RESULT_VERSION as RESULT_VERSION  # read from here by callers
from lowdim_sd.bench.stored import (
    changed_settings,
    check_out,
    computed_dtype,
    make_out,
    read_result,
    read_settings,
    recorded_hypernet,
    refuse_other_hypernets,
)
from lowdim_sd.draw_parts import DrawParts, drawing_parts
from lowdim_sd.prompt_words import with_looks
from lowdim_sd.runs import RERUN, Interrupted

if TYPE_CHECKING:
    from lowdim_sd.loading import SDModel


def shipped_hypernet(model: str) -> Path | None:
    """The hypernetwork the model's backend ships (TinyFaces does), so hyper rows run without --hypernet."""
    from lowdim_sd.personalize_hypernet import default_hypernet
    from lowdim_sd.registered_models import registered_entry

    entry = registered_entry(model)
    return default_hypernet(entry.value) if entry else None


def bench_prompts(model: str) -> list[str]:
    from lowdim_sd.plugin import SDBackend
    from lowdim_sd.registered_models import registered_entry

    entry = registered_entry(model)
    return list(getattr(entry.value, "bench_prompts", SDBackend.bench_prompts) if entry else SDBackend.bench_prompts)


def settings(job: QualityJob) -> dict:
    """What makes results comparable: a resumed run must match these.

    The hypernetwork is not among them (rows without it stay valid when it changes); each result of a
    row that uses it records which one, and ``aggregate`` refuses a row mixing two.
    """
    keep = ("model", "prompts", "metrics", "token", "seed", "sample_steps", "guidance", "dtype")
    recorded = {"version": RESULT_VERSION, **{k: v for k, v in asdict(job).items() if k in keep}}
    return recorded | {"dtype": computed_dtype(job.dtype, job.device)}  # what the results are computed in


def plan(job: QualityJob, run: bool = True) -> list[Task]:
    """Every (method, identity) task, shuffled. Tabulating (``run=False``) reads the results alone, so
    without the reference folder it takes the identities the results hold."""
    from lowdim_sd.images import collect_images

    if not run and (job.identities is None or not Path(job.identities).is_dir()):
        parse_methods(",".join(job.checked_methods()))
        return [Task(m, name, "") for name in stored_identities(job) for m in job.checked_methods()]
    if job.identities is None:
        raise LowdimError("-i/--identities is needed to run the benchmark (only --no-run tabulates without it)")
    if not Path(job.identities).is_dir():
        raise LowdimError(f"{job.identities}: not a folder of reference images (one per identity)")
    references = collect_images(job.identities)[: job.limit]
    if not references:
        raise LowdimError(f"{job.identities}: no reference images in this folder (one per identity)")
    parse_methods(",".join(job.checked_methods()))
    tasks = [Task(m, ref.stem, str(ref)) for ref in references for m in job.checked_methods()]
    random.Random(job.seed).shuffle(tasks)  # methods interleave, so workers share the machine evenly
    # Rows drawn from another row's file last, so that file is mostly written by then instead of waited for.
    return sorted(tasks, key=lambda task: trained_row(task.method) != task.method)


def result_path(out: Path, task: Task) -> Path:
    return Path(out) / "results" / task.method / f"{task.identity}.json"


def stored_identities(job: QualityJob) -> list[str]:
    """The identities with a result of any of the job's rows, sorted, the first ``limit`` of them."""
    results = Path(job.out) / "results"
    names = {path.stem for method in job.checked_methods() for path in (results / method).glob("*.json")}
    return sorted(names)[: job.limit]


def check_job(job: QualityJob, run: bool = True) -> None:
    """Fill the default prompts, rows and gallery and refuse impossible settings, before any model loads or file
    is written. Tabulating (not ``run``), the default rows are those with results, and the settings the results
    were made with replace the job's (``use_stored_settings``): the gallery's prompt numbers count theirs."""
    job.prompts = job.prompts or bench_prompts(job.model)
    check_rows(job, run)
    if len(job.prompts) == 0:
        raise LowdimError(f"no prompts: {either('pass --prompt at least once', 'give QualityJob(prompts=[...])')}")
    check_words(job)
    unnamed = [prompt for prompt in job.prompts if "[V]" not in prompt]
    if unnamed:  # every row would then draw the base model's face there, and identity scores measure nothing
        asked = either("--prompt", "QualityJob(prompts=...)")
        warnings.warn(f"{asked} {unnamed[0]!r} does not name the subject: [V] is where its identifier goes "
                      f"('a [V] face at night')", stacklevel=2)
    counts = {"sample_steps": job.sample_steps, "workers": job.workers, "batch_subjects": job.batch_subjects,
              "limit": job.limit, "threads": job.threads}
    for field, value in counts.items():
        if value is not None and value < 1:
            raise LowdimError(f"{option(field, 'QualityJob')} must be at least 1; got {value}")
    if job.hypernet is not None and not Path(job.hypernet).is_file():
        raise LowdimError(f"{job.hypernet}: hypernetwork checkpoint not found")
    from lowdim.registry import get_registry
    from lowdim_sd.devices import check_training_dtype, resolve_device, resolve_dtype
    from lowdim_sd.eval.job import parse_metric_names

    if run:  # every method trains
        check_training_dtype(job.device, job.dtype)
    else:  # tabulating trains nothing (a folder made in fp16 on a GPU reads on a CPU), but takes only lowdim's words
        resolve_dtype(job.dtype, resolve_device(job.device))
    registry = get_registry()
    if job.metrics:  # a metric named twice would be scored and stored twice
        parse_metric_names(",".join(job.metrics), owner="QualityJob")
    unknown = [name for name in job.metrics if name not in registry.metrics]
    if unknown:
        raise LowdimError(f"unknown metric(s) {', '.join(unknown)}; "
                          f"registered: {', '.join(registry.metrics) or 'none'}")
    if not run:
        use_stored_settings(job)
    check_gallery(job)  # gallery.png is drawn only at the end: checked here, before hours of work, not after


def needs_hypernet(method: str) -> bool:
    found = get_method(method)
    return found.kind == "hyper" and found.use_hypernet


def prepare(job: QualityJob, run: bool = True) -> list[Task]:
    """Check the job and the output folder's settings (or write them), and list the tasks.

    With ``run`` the hypernetwork is required only by the rows still to run: a resumed run whose
    hypernetwork rows are done, or a tabulation, does without it.
    """
    check_job(job, run)
    check_out(job.out)
    tasks = plan(job, run)
    for row, why in job.left_out.items():
        warnings.warn(f"{row} is left out: {why}", stacklevel=3)
    job.left_out = {}  # said once, however many times the job is prepared
    if not run and not any(result_path(job.out, t).is_file() for t in tasks):
        # An empty table would look like a finished benchmark of nothing; a mistyped --out is the likely cause.
        raise LowdimError(f"{job.out}: no results to tabulate (run without --no-run first)")
    missing = sorted({t.method for t in tasks if needs_hypernet(t.method) and not result_path(job.out, t).exists()})
    if run and missing:  # their hypernetwork, checked before the folder is made and any row loads the model
        job.hypernet = job.hypernet or shipped_hypernet(job.model)
        check_hypernet_header(job.model, job.hypernet, missing, [get_method(name) for name in missing])
    out = Path(job.out)
    wanted = settings(job)
    stored = out / "settings.json"
    if run:
        make_out(out)
    if stored.exists() and not run:
        use_stored_settings(job)
    elif stored.exists():
        changed = changed_settings(wanted, read_settings(stored))
        if changed:
            raise LowdimError(f"{out} holds results made with other settings ({', '.join(changed)}); "
                              f"use another --out or delete it")
    elif run:  # tabulating claims no folder: it only reads
        write_json(stored, wanted)
    return tasks


def use_stored_settings(job: QualityJob) -> None:
    """Tabulating: the results are what they are, so the settings they were made with hold (the prompts
    the gallery shows among them); ``read_settings`` checked each, and the metrics must be registered here."""
    from lowdim.registry import get_registry

    stored = Path(job.out) / "settings.json"
    if stored.is_file():
        previous = read_settings(stored)
        registered = get_registry().metrics
        unknown = [name for name in previous["metrics"] if name not in registered]
        if unknown:
            raise LowdimError(f"{stored}: the results were scored by metric(s) {', '.join(map(repr, unknown))}, "
                              f"which no plugin installed here registers (registered: "
                              f"{', '.join(registered) or 'none'}); install the plugin that scores them")
        for key in settings(job).keys() & previous.keys() - {"version"}:  # version: checked to be this one
            setattr(job, key, previous[key])


def write_json(path: Path, record: dict, allow_nan: bool = True) -> None:
    """``record`` as ``path``, atomically; ``allow_nan=False`` refuses NaN and inf (ValueError), as JSON does."""
    atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(record, indent=1, allow_nan=allow_nan)))


def run_quality(job: QualityJob, on_done: Callable[[Task, dict], None] | None = None, run: bool = True) -> list[dict]:
    """Run every task not already done (none with ``run=False``); returns all results there are."""
    tasks = prepare(job, run)
    done = stored_results(job, tasks)  # a damaged result is named now, not after hours of work
    if run and job.hypernet is not None:
        refuse_other_hypernets(done, Path(job.hypernet), Path(job.out))
    todo = [t for t in tasks if run and not result_path(job.out, t).exists()]
    try:
        run_todo(job, todo, on_done)
    except KeyboardInterrupt as stop:
        # Whatever the training engine said (a checkpoint and --resume) is gone with the task's work folder.
        kept = sum(result_path(job.out, t).exists() for t in tasks)
        raise Interrupted(f"interrupted; {kept} of {len(tasks)} (method, identity) results are kept in "
                          f"{Path(job.out) / 'results'}; {RERUN} to continue") from stop
    return stored_results(job, tasks)


def run_todo(job: QualityJob, todo: list[Task], on_done: Callable[[Task, dict], None] | None) -> None:
    if todo and job.batch_subjects > 1:
        from lowdim_sd.bench.batched import train_batched

        # A drawn row's file is its row's (ROW@S draws ROW's): trained once, under the row's name.
        rows = {(trained_row(t.method), t.identity): Task(trained_row(t.method), t.identity, t.reference) for t in todo}
        train_batched(job, list(rows.values()), job.batch_subjects)
    if todo:
        from lowdim_sd.bench.workers import run_tasks

        run_tasks(job, todo, run_task, on_done)


def stored_results(job: QualityJob, tasks: list[Task]) -> list[dict]:
    """The results there are, checked: with the folder's settings (a run has written them by now; tabulating,
    the job holds them), a score per prompt of the metrics they list; a folder made by hand without them is
    taken as it scores."""
    made = (Path(job.out) / "settings.json").is_file()
    prompts, metrics = (len(job.checked_prompts()), job.metrics) if made else (None, None)
    return [read_result(result_path(job.out, t), prompts, metrics) for t in tasks if result_path(job.out, t).exists()]


# -- one task, in whichever process runs it -------------------------------------------------------
_METRICS: dict[str, Metric] = {}
_SKIPPED: dict[str, str] = {}


def load_metrics(names: list[str]) -> tuple[dict[str, Metric], dict[str, str]]:
    """Registered metrics by name, loaded once per process; unavailable ones are skipped with the reason."""
    from lowdim.registry import get_registry

    registry = get_registry()
    for name in names:
        if name in _METRICS or name in _SKIPPED:
            continue
        if name not in registry.metrics:
            raise LowdimError(f"unknown metric '{name}'; registered: {', '.join(registry.metrics) or 'none'}")
        try:
            _METRICS[name] = registry.metrics[name].value()
        except MetricUnavailable as error:
            _SKIPPED[name] = str(error)
    return ({n: _METRICS[n] for n in names if n in _METRICS}, {n: _SKIPPED[n] for n in names if n in _SKIPPED})


def run_task(job: QualityJob, task: Task) -> dict | None:
    """Run one task unless another process holds it (then None)."""
    from lowdim_sd.bench.claims import claim, release

    path = result_path(job.out, task)
    if path.exists() or not claim(path):
        return None
    try:
        return _run_claimed(job, task)
    finally:
        release(path)


def _personalize(job: QualityJob, task: Task, model, reference, work: Path) -> Personalized:
    """The row's adapter: trained here, or the file another task trained (batched, or the row this one draws
    another way: ROW@S reuses ROW's file, since personalizing again would give the same one), waited for while
    another worker trains it."""
    from lowdim_sd.bench.batched import keep_adapter, pretrained
    from lowdim_sd.bench.shared_adapter import row_adapter
    from lowdim_sd.generate import attach_adapters

    method, trained_as = get_method(task.method), trained_row(task.method)

    def train() -> Personalized:
        done = personalize_subject(model, method, reference, work, job.hypernet, job.token, job.seed)
        if done.file is not None and not method.full and method.kind != "base":
            keep_adapter(job.out, trained_as, task.identity, done, str(model.device))
        return done

    if method.full or method.kind == "base":  # no adapter file to share
        return train()
    ready = pretrained(job.out, task.method, task.identity)  # a batched run of an older version trained ROW@S too
    trained_here = False
    if ready is None:
        ready, trained_here = row_adapter(job.out, trained_as, task.identity, task.method, train)
    if not trained_here:
        attach_adapters(model, [(ready.kept_file(), 1.0)])  # as `lowdim generate` loads it: a TI file as an embedding
    return ready


def _run_claimed(job: QualityJob, task: Task) -> dict:
    from lowdim_sd.generate import attach_adapters
    from lowdim_sd.images import load_image, save_png, to_pil
    from lowdim_sd.loading import load_sd

    method = get_method(task.method)
    model = load_sd(job.model, job.device, job.dtype, job.model_config)
    reference = load_image(task.reference, model.resolution)
    # Named after the task this process holds, so the folder of a worker killed mid-task (Ctrl-C with
    # --workers) is cleared by the task's rerun instead of lingering with its checkpoints.
    work = Path(job.out) / f"bench-{task.method}-{task.identity}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        done = _personalize(job, task, model, reference, work)
        if method.drawn_from_file:  # as a user draws the file: a fresh model, the adapter at that scale
            model = load_sd(job.model, job.device, job.dtype, job.model_config)
            attach_adapters(model, [(done.kept_file(), method.adapter_scale)])
        prompts = [with_looks(prompt, done.looks) for prompt in job.checked_prompts()]
        images = generate_batch(model, job, prompts, method.parts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    folder = Path(job.out) / "images" / task.method / task.identity
    for index, image in enumerate(images):
        save_png(image, folder / f"{index:02d}.png")
    reference_image = to_pil(reference[None])[0]
    samples = [Sample(image, (reference_image,), prompt.replace("[V]", job.token), job.token)
               for image, prompt in zip(images, prompts, strict=True)]
    metrics, skipped = load_metrics(job.metrics)
    # A row that uses the hypernetwork has one (personalize_subject refuses it otherwise).
    hypernet = job.hypernet if method.kind == "hyper" and method.use_hypernet else None
    record = {"method": task.method, "identity": task.identity, "reference": recorded_reference(task, job.out),
              "seconds": done.seconds, "bytes": done.bytes, "device": str(model.device), "looks": done.looks,
              **recorded_hypernet(hypernet), **scores_of(metrics, samples),
              "columns": {name: metric.column for name, metric in metrics.items()}, "skipped": skipped}
    write_json(result_path(job.out, task), record)
    return record


def recorded_reference(task: Task, out: Path) -> str:
    """The task's reference image as its result records it: relative to the results folder, so the gallery finds
    it from any working folder, and in a folder received with its references beside it as they were here."""
    try:
        return os.path.relpath(Path(task.reference).absolute(), Path(out).absolute())
    except ValueError:  # on another drive (Windows): no relative path leads there
        return str(Path(task.reference).absolute())


def scores_of(metrics: dict, samples: list[Sample]) -> dict:
    """A result's "scores" ({metric: [score or None]}) and, where a metric had no question for some
    pictures (a prompt naming no style), "not_asked" ({metric: count}): those Nones are no misses."""
    from lowdim_sd.eval.report import score_all

    results = {name: score_all(metric, samples, max(len(samples), 1), None) for name, metric in metrics.items()}
    not_asked = {name: r.summary.not_asked for name, r in results.items() if r.summary.not_asked}
    return {"scores": {name: r.scores for name, r in results.items()}} | ({"not_asked": not_asked} if not_asked else {})


@torch.no_grad()
def generate_batch(model: SDModel, job: QualityJob, prompts: list[str] | None = None,
                   parts: DrawParts = DrawParts()) -> list:
    """One image per prompt (default: the job's), batched in one pipeline call; prompt k uses seed ``seed + k``.
    ``parts``: the adapters' parts drawn apart, as `lowdim generate --text-encoder-scale/--adapter-start/
    --adapter-end` do."""
    from lowdim_sd.generate import set_scheduler

    set_scheduler(model, "ddim")  # as `lowdim generate` does by default
    prompts = [p.replace("[V]", job.token) for p in (prompts or job.checked_prompts())]
    generators = [torch.Generator().manual_seed(job.seed + k) for k in range(len(prompts))]
    with drawing_parts(model, parts, job.sample_steps) as callback:
        return model.pipe(prompts, num_inference_steps=job.sample_steps, guidance_scale=job.guidance,
                          generator=generators, height=model.resolution, width=model.resolution,
                          callback_on_step_end=callback).images
