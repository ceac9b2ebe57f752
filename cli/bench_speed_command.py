"""``lowdim bench speed``: seconds from one photo to a personalized SD1.5, and what the alternatives take.

A command rather than a script under benchmarks/: it ships with the package, so anyone who installed
lowdim can measure their own GPU with the same code the numbers in docs/benchmarks.md came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from lowdim_cli.console import out, user_text
from lowdim_cli.shared_options import Device


def speed(
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o", help="Results folder: measurements/ (one file each), speed.json, table.md. Rerunning the "
                            "same command on the same machine resumes it: what is stored is not measured "
                            "again.")] = Path("bench-speed"),
    quick: Annotated[bool, typer.Option("--quick",
        help="CI scale: the tests' tiny pipeline and a tiny ViT, few steps and repeats (under a minute on one CPU "
             "core). Without it: SD1.5's architecture and a ViT-H/14 encoder, random weights, nothing "
             "downloaded (a GPU: a few minutes; a CPU: hours and about 20 GB for full DreamBooth).")] = False,
    device: Device = "auto",
    dtype: Annotated[str, typer.Option(
        help="Model weights: auto (fp16 on a GPU, fp32 on a CPU), fp32, fp16, bf16. Full DreamBooth keeps fp32 "
             "weights for AdamW and autocasts to this dtype.")] = "auto",
    resolution: Annotated[int | None, typer.Option(
        help="Image side in pixels, a multiple of 8 (default: 512, or 16 with --quick).")] = None,
    repeats: Annotated[int | None, typer.Option(
        help="Timed calls per variant and round for the per-call rows (default: 5, or 2 with --quick); the "
             "table shows their median and quartiles.")] = None,
    photo: Annotated[Path | None, typer.Option(
        help="Photo with one face for the face-crop row (default: scikit-image's astronaut, if installed).")] = None,
    model_dir: Annotated[Path | None, typer.Option(
        help="Where the random-weight model is saved once and loaded from (default: OUT/model; SD1.5 in fp16 "
             "is about 2 GB).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite",
        help="Drop the measurements stored in --out (and their table) when they were made with other settings "
             "or on another machine, instead of refusing them; those of the same settings on the same machine "
             "are kept, and the run resumes. To measure everything again, delete --out (or one file of "
             "OUT/measurements/ to measure that row again), or pass another --out.")] = False,
    only: Annotated[str | None, typer.Option(
        help="Comma list of tasks to measure (default: all): load, crop, hypernet, merge, finetune, "
             "finetune-graphs (CUDA only), memory, generate, lora-db, adapter-step, adapter-infer, peft-step, "
             "peft-infer, precompute-k1 (-k8, -k16, -k32), full-db. The table still shows every row already "
             "stored. A row stored as skipped (no face detector, out of memory) is measured again only when its "
             "task is named here.")] = None,
    run: Annotated[bool, typer.Option(
        help="--no-run: measure nothing, only write the table of what --out holds (e.g. after a timeout), with the "
             "settings it was measured with; a settings flag that says otherwise is refused.")] = True,
):
    """Time every stage of personalize side by side with LoRA and full DreamBooth, peft's LoRA and batched precompute.

    Prints one table of seconds and ratios (with the goals of docs/benchmarks.md) and writes it to
    OUT/speed.json and OUT/table.md. Examples:

      lowdim bench speed --quick --device cpu -o speed-ci

      lowdim bench speed --device cuda --dtype fp16 -o speed-h100
    """
    from lowdim_sd.bench.speed import SpeedJob, run_speed

    job = SpeedJob(out=out_dir, quick=quick, device=device, dtype=dtype, resolution=resolution, repeats=repeats,
                   photo=photo, model_dir=model_dir, overwrite=overwrite,
                   only=tuple(part.strip() for part in (only or "").split(",") if part.strip()), run=run)
    report = run_speed(job)  # its bar on stderr, as every command's: stdout holds the table
    show(report)
    out.print(f"wrote {user_text(out_dir / 'speed.json', 'bold')} and {user_text(out_dir / 'table.md', 'bold')}")


def show(report: dict) -> None:
    from lowdim_sd.bench.speed_report import table_rows
    from lowdim_sd.bench.speed_setup import SCALES

    settings = report["settings"]
    # read from speed.json: text, never rich markup
    table = Table(title=Text(f"bench speed: {settings['scale']} scale, {settings['device']}, {settings['dtype']}, "
                             f"{settings['resolution']} px (median seconds)", "table.title"))
    for index, name in enumerate(("measurement", "seconds", "p25–p75", "ratio", "goal")):
        table.add_column(name, justify="left" if index in (0, 4) else "right")
    for title, rows in table_rows(report, SCALES[settings["scale"]]):
        table.add_row(user_text(title, 'bold'))
        for cells in rows:
            table.add_row(*map(Text, cells))  # text, never rich markup: a skipped reason is read from its file
        table.add_section()
    out.print(table)
