"""``lowdim tinyfaces-identities``: a folder of TinyFaces identities for precompute and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .folders import SPLITS, write_identities


def tinyfaces_identities(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write id-00000.png ... into.")],
    count: Annotated[int, typer.Option(min=1, help="Number of identities (one image each).")] = 500,
    split: Annotated[str, typer.Option(
        help="Identity split: train (for precompute), val, or test (held out everywhere: benchmarks).")] = "train",
    seed: Annotated[int, typer.Option(help="Same seed, count and split: same identities.")] = 0,
    style: Annotated[str, typer.Option(help="Style of the reference images.")] = "photo",
):
    """Write TinyFaces identities as a flat image folder, the input of `lowdim precompute` and `lowdim bench`.

    Example: lowdim tinyfaces-identities -o faces --count 500 --split train
    """
    from lowdim.errors import LowdimError
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
    paths = write_identities(out, count, split, seed, style)
    typer.echo(f"wrote {len(paths)} identities ({split} split) to {out}")


def register(cli: typer.Typer) -> None:
    cli.command()(tinyfaces_identities)
