"""``lowdim bench quality``: the paper's Tables 1-3 on held-out identities, a thin wrapper over lowdim_sd.bench."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from lowdim.errors import LowdimError
from lowdim_cli.console import out, user_text
from lowdim_cli.sd_commands import typed_options
from lowdim_cli.shared_options import Device, Model, ModelConfig

bench = typer.Typer(help="Benchmarks that reproduce the paper's tables.", no_args_is_help=True)


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def prompt_numbers(text: str | None, prompts: list[str] | None = None) -> list[int] | None:
    """--gallery-prompts as numbers (None: not given, the default); a part that is no number is refused here, by
    the flag (whether a number names a prompt, check_job says: the prompts may come from stored results). With
    ``prompts``, checked and defaulted against them as check_job does (only tests/sd/test_bench.py asks that)."""
    numbers = None if text is None else [_number(part) for part in _split(text) or []]
    if prompts is None:
        return numbers
    from lowdim_sd.bench.quality import QualityJob
    from lowdim_sd.bench.report import check_gallery

    job = QualityJob(identities=None, prompts=prompts, gallery_prompts=numbers)
    check_gallery(job)
    return job.gallery_prompts


def _number(part: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", part):  # int() would take "1_0" and other digits than 0-9
        raise LowdimError(f"--gallery-prompts: '{part}' is not a prompt number (give numbers from 0, e.g. 0,3,5)")
    return int(part)


# Settings of a run, which --no-run takes from the results instead (as the parameters' names: flags).
RUN_FLAGS = {"metrics": "--metrics", "prompt": "--prompt", "seed": "--seed", "sample_steps": "--sample-steps",
             "guidance": "--guidance", "dtype": "--dtype", "hypernet": "--hypernet", "workers": "--workers",
             "threads": "--threads", "batch_subjects": "--batch-subjects", "device": "--device"}


def ignored_run_flags(typed: set[str]) -> str | None:
    """The warning for run settings typed with --no-run: said, since the table would look as if it used them."""
    ignored = [flag for name, flag in RUN_FLAGS.items() if name in typed]
    return (f"--no-run tabulates the results with the settings they were made with: {', '.join(ignored)} "
            f"{'is' if len(ignored) == 1 else 'are'} ignored") if ignored else None


@bench.command()
def quality(
    ctx: typer.Context,
    identities: Annotated[Path | None, typer.Option(
        "--identities", "-i", help="Flat folder: one reference image per HELD-OUT identity (never used in training); "
                                   "needed to run, not to tabulate (--no-run).", show_default=False)] = None,
    model: Model = "tinyfaces",
    model_config: ModelConfig = None,
    hypernet: Annotated[Path | None, typer.Option(
        help="Trained hypernetwork checkpoint for ours, ours-k1 and only-hyper; "
             "default: the one the model ships (TinyFaces does).")] = None,
    methods: Annotated[str | None, typer.Option(
        help="Comma list of rows (default: all the model can run; with --no-run, those with results): "
             "ours, ours-k1, only-hyper, ours-unet, "
             "only-hyper-unet, ours-styles, ours-described, ours-described-styles, only-hyper-described, no-hyper, "
             "lidb-db, lora-db, dreambooth, db-agg-1, db-agg-2, ti, base, base-described. The -described rows "
             "name the looks the model's describer reads in every prompt, as personalize --describe does "
             "(tinyfaces has one); base-described is the base model told those words, with no personalization. "
             "ours-styles-λ (e.g. ours-styles-0.05) is Ours with personalize --keep-styles λ, and "
             "ours-described-styles-λ the same with the looks in words, to chart your own point of "
             "frontier.png. ROW@S (e.g. ours-described@0.3) draws any row's adapter file at scale S, as "
             "lowdim generate --adapter FILE:S does; ROW@te=T draws its text encoder's part at T, ROW@start=F and "
             "ROW@end=F its UNet part from and until fraction F of the steps (--text-encoder-scale, "
             "--adapter-start, --adapter-end) and ROW@ca=C its UNet cross-attention at C (--cross-attention-scale), "
             "chained: ours-described-styles@te=0@start=0.2@end=0.8.")] = None,
    metrics: Annotated[str | None, typer.Option(
        help="Comma list of registered metrics, each once (default: tinyfaces-identity,tinyfaces-image,"
             "tinyfaces-style).")] = None,
    prompt: Annotated[list[str] | None, typer.Option(
        help="A prompt with [V], repeatable (default: the model's bench prompts).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N identities (sorted by file name).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of training noise and of prompt k's image (seed + k).")] = 0,
    sample_steps: Annotated[int, typer.Option(help="Sampling steps per image.")] = 25,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 4.0,
    workers: Annotated[int, typer.Option(help="Processes sharing the tasks (one GPU serves several).")] = 1,
    threads: Annotated[int | None, typer.Option(help="Torch threads per worker (default: cores / workers).")] = None,
    batch_subjects: Annotated[int, typer.Option(
        help="Train the LoRA/LiDB DreamBooth and Textual Inversion rows this many identities at once "
             "(same adapters, much faster; time per subject is the batch's divided by K).")] = 1,
    gallery_identities: Annotated[int, typer.Option(help="Rows of gallery.png.")] = 4,
    gallery_prompts: Annotated[str | None, typer.Option(
        help="Comma list of prompt numbers (from 0) shown in gallery.png (default: 0,3,5 of those there are); "
             "empty: no gallery.")] = None,
    gallery_methods: Annotated[str | None, typer.Option(
        help="Comma list of rows shown in gallery.png (default: every row with results).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Results folder; rerunning resumes it.")] = Path(
        "bench-quality"),
    run: Annotated[bool, typer.Option(
        help="--no-run: only tabulate the results already in --out (a partial or shared run), with the settings "
             "they were made with; without -i the identities are those the results hold.")] = True,
    device: Device = "auto",
    dtype: Annotated[str, typer.Option(
        help="Model weights: fp32 (the default, on every device), fp16, bf16, or auto (fp16 on GPU, fp32 on CPU).")
    ] = "fp32",
):
    """Personalize every held-out identity with every method, generate every prompt, score, tabulate.

    Writes OUT/table.md, OUT/table.json, OUT/gallery.png and OUT/frontier.png (subject fidelity against
    prompt fidelity, one dot per row); per-task results under OUT/results resume an interrupted run.
    Example (TinyFaces, see docs/results.md):
    \v\b
      lowdim tinyfaces-identities -o heldout --count 50 --split test
      lowdim bench quality -i heldout --hypernet hyper/hypernet.safetensors --workers 2
    """
    from lowdim_sd.bench.quality import DEFAULT_METRICS, QualityJob, check_job, run_quality
    from lowdim_sd.bench.report import aggregate, write_reports
    from lowdim_sd.eval.job import parse_metric_names

    job = QualityJob(identities=identities, model=model, model_config=model_config, out=out_dir, hypernet=hypernet,
                     methods=_split(methods) or None,
                     metrics=list(parse_metric_names(metrics) if metrics is not None else DEFAULT_METRICS),
                     prompts=prompt or None, limit=limit, seed=seed, sample_steps=sample_steps, guidance=guidance,
                     workers=workers, threads=threads, batch_subjects=batch_subjects, device=device, dtype=dtype,
                     gallery_identities=gallery_identities, gallery_prompts=prompt_numbers(gallery_prompts),
                     gallery_methods=_split(gallery_methods))
    check_job(job, run)  # run_quality checks it too; here a refused setting comes before the warning below
    ignored = None if run else ignored_run_flags(typed_options(ctx))
    if ignored:
        out.print(f"[yellow]Warning:[/] {user_text(ignored)}", highlight=False)
    results = run_quality(job, run=run)
    rows, columns = aggregate(results, job.checked_methods())
    paths = write_reports(job, results, rows, columns)
    show(rows, columns)
    if not job.gallery_prompts and (Path(out_dir) / "gallery.png").is_file():  # kept, but no longer matches the table
        gallery = user_text(Path(out_dir) / "gallery.png")
        out.print(f"[yellow]Warning:[/] no gallery (--gallery-prompts is empty); {gallery} is from an earlier run",
                  highlight=False)
    skipped = {k: v for r in results for k, v in r.get("skipped", {}).items()}
    for name, reason in skipped.items():
        out.print(f"[yellow]skipped metric {user_text(name)}:[/] {user_text(reason)}")  # read from result files
    for path in paths:
        out.print(f"wrote {user_text(path, 'bold')}")


def show(rows, columns) -> None:
    from lowdim_sd.bench.report import not_asked_notes, table_rows

    header, body = table_rows(rows, columns)
    table = Table(title="bench quality (mean ± s.e. over identities)")
    for index, name in enumerate(header):
        table.add_column(Text(name), justify="left" if index == 0 else "right")
    for cells in body:
        table.add_row(*map(Text, cells))  # text, never rich markup
    out.print(table)
    for note in not_asked_notes(rows, columns):
        out.print(user_text(note), highlight=False)


def register(app: typer.Typer) -> None:
    from lowdim_cli.bench_speed_command import speed

    bench.command()(speed)
    app.add_typer(bench, name="bench")
