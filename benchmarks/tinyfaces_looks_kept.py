"""Does a row keep the reference's hair, skin and glasses in the pictures that took their prompt's style?

Issue 13 asks the README preview for the reference's looks "in every style": a picture counts when the
style classifier sees the prompted style AND the identity encoder's factor heads read back the
reference's hair colour, hair style, skin tone and glasses. For each row of a `lowdim bench quality`
folder run on identities written by `lowdim tinyfaces-identities` (whose factor levels it reads), this
prints per style the share of pictures that took the style, the share of those whose four looks all read
back, and the same over every picture of the style ("both").

    python benchmarks/tinyfaces_looks_kept.py runs/r15/test runs/r15/heldout renders ours ours-described

The row name `renders` is the ceiling: TinyFaces' own renders of each identity in each prompted style
(lowdim_tinyfaces.world.styled_renders, as benchmarks/tinyfaces_ceiling.py draws them), all styled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from lowdim_tinyfaces.folders import read_levels
from lowdim_tinyfaces.identity import FACTOR_NAMES
from lowdim_tinyfaces.metrics import load_identity_encoder
from lowdim_tinyfaces.metrics.plugin_metrics import prompted_style, to_tensor
from lowdim_tinyfaces.world import styled_renders
from PIL import Image

LOOKS = ("hair_colour", "hair_style", "skin_tone", "glasses")
STYLE = "tinyfaces-style"
CEILING = "renders"


def looks_kept(predicted: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per image, whether every one of LOOKS reads back as the reference's level."""
    columns = [FACTOR_NAMES.index(name) for name in LOOKS]
    return (predicted[:, columns] == levels[:, columns]).all(axis=1)


def rendered_pictures(levels: dict[str, np.ndarray], styles: list[str]):
    """(identity, its renders in ``styles``, all styled) per identity: the ceiling row."""
    for name, images in styled_renders(levels, styles):
        yield name, [Image.fromarray(a) for a in images], [1.0] * len(styles)


def bench_pictures(bench: Path, method: str, count: int):
    """(identity, its pictures, the style verdicts) per result of ``method`` in a bench folder."""
    records = sorted((bench / "results" / method).glob("*.json"))
    if not records:
        raise SystemExit(f"no results for '{method}' in {bench / 'results' / method}")
    for record in records:
        result = json.loads(record.read_text())
        folder = bench / "images" / method / result["identity"]
        images = [Image.open(folder / f"{k:02d}.png").convert("RGB") for k in range(count)]
        yield result["identity"], images, [1.0 if s else 0.0 for s in result["scores"][STYLE]]


def row_table(bench: Path, identities: Path, method: str, encoder) -> dict[str, tuple[float, float, float]]:
    """Per style: (share styled, share of styled pictures with the looks, share of all pictures with both)."""
    levels = read_levels(identities)
    prompts = json.loads((bench / "settings.json").read_text())["prompts"]
    took, kept, styles = [], [], [prompted_style(p) for p in prompts]
    pictures = rendered_pictures(levels, styles) if method == CEILING else bench_pictures(bench, method, len(prompts))
    for identity, images, verdicts in pictures:
        with torch.no_grad():
            predicted = encoder.predict_factors(to_tensor(images)).numpy()
        reference = np.repeat(levels[identity][None], len(prompts), axis=0)
        kept.append(looks_kept(predicted, reference))
        took.append(verdicts)
    took_all, kept_all = np.array(took) > 0.5, np.array(kept)
    table = {}
    for style in dict.fromkeys(styles):
        columns = [k for k, s in enumerate(styles) if s == style]
        styled, looks = took_all[:, columns], kept_all[:, columns]
        within = looks[styled].mean() if styled.any() else float("nan")
        table[style] = (styled.mean(), within, (styled & looks).mean())
    return table


def check_inputs(bench: Path, identities: Path, methods: list[str]) -> None:
    """One line naming the first file or folder the rows need that is not there, before anything loads."""
    index = identities / ".identities.json"
    if not index.is_file():
        raise SystemExit(f"{index}: not found; give the identities folder `lowdim tinyfaces-identities` wrote")
    if not (bench / "settings.json").is_file():
        raise SystemExit(f"{bench / 'settings.json'}: not found; give a `lowdim bench quality` --out folder")
    for method in methods:
        pictures = bench / "images" / method
        if method != CEILING and not pictures.is_dir():
            raise SystemExit(f"{pictures}: no such folder; row '{method}' needs the bench's pictures "
                             "(the archives in benchmarks/results hold none: run the bench to draw them)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", type=Path, help="a `lowdim bench quality` --out folder")
    parser.add_argument("identities", type=Path, help="its identities folder (with .identities.json)")
    parser.add_argument("methods", nargs="+", help=f"rows of the bench folder; '{CEILING}' for the ceiling")
    args = parser.parse_args(argv)
    check_inputs(args.bench, args.identities, args.methods)
    encoder = load_identity_encoder()
    print("| row | " + " | ".join(f"{s}: styled / looks if styled / both" for s in ("photo", "sketch", "popart",
                                                                                    "night", "red_background",
                                                                                    "hat")) + " |")
    print("|---" * 7 + "|")
    for method in args.methods:
        table = row_table(args.bench, args.identities, method, encoder)
        cells = [" / ".join(f"{v:.2f}" for v in table[s]) for s in table]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
