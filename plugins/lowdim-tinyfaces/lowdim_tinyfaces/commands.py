"""``lowdim tinyfaces-identities``: a folder of TinyFaces identities for precompute and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def tinyfaces_identities(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write id-00000.png ... into.")],
    count: Annotated[int, typer.Option(min=1, help="Number of identities (one image each).")] = 500,
    split: Annotated[str, typer.Option(
        help="Identity split: train (for precompute), val, or test (held out everywhere: benchmarks).")] = "train",
    seed: Annotated[int, typer.Option(help="Same seed, count and split: same identities.")] = 0,
    style: Annotated[str, typer.Option(help="Style of the reference images: photo, sketch, popart, night, "
                                            "red_background or hat.")] = "photo",
    renders: Annotated[int, typer.Option(min=1, max=64, help="Photos per identity; above 1 each identity is a "
                                         "sub-folder of them (other pose, light, clothes), e.g. for "
                                         "`train-hypernet --key-pairs`.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=(
        "Replace the identities already in --out (all of them: the folder then holds this set alone); "
        "without it such a folder is refused, unless it holds exactly this set."))] = False,
):
    """Write TinyFaces identities as a flat image folder, the input of `lowdim precompute` and `lowdim bench`.

    Example: lowdim tinyfaces-identities -o faces --count 500 --split train

    Photos of the same people for learned retrieval keys: lowdim tinyfaces-identities -o people --count 3000
    --split train --seed 1 --renders 2

    A folder that already holds identities is refused unless it holds exactly these (a rerun) or --overwrite
    is given: weight folders made from it refer to its images by name.
    """
    from lowdim.errors import LowdimError  # these import torch and PIL: not for --help
    from lowdim_tinyfaces.folders import SPLITS, holds_exactly, identities_word, write_identities
    from lowdim_tinyfaces.styles import STYLES

    if split not in SPLITS:
        raise LowdimError(f"--split must be one of {', '.join(SPLITS)}; got '{split}'")
    if style not in STYLES:
        raise LowdimError(f"--style must be one of {', '.join(STYLES)}; got '{style}'")
    # mkdir would fail with a traceback on a file anywhere along the path, after all the rendering.
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = f"--out {out}" if blocking == out else f"--out {out}: {blocking}"
        raise LowdimError(f"{where} is a file, not a folder; pass a folder to write the identities into")
    if holds_exactly(out, count, split, seed, style, renders=renders):
        typer.echo(f"{out} already holds {'this' if count == 1 else 'these'} {identities_word(count)} ({split} split, "
                   f"seed {seed}); nothing to write")
        return
    paths = write_identities(out, count, split, seed, style, renders=renders, overwrite=overwrite)
    typer.echo(f"wrote {identities_word(len(paths))} ({split} split) to {out}")


def register(cli: typer.Typer) -> None:
    cli.command()(tinyfaces_identities)
