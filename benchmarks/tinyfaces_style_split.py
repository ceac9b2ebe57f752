"""Identity on the images that took their prompt's style, and on those that did not, per prompt and row.

`lowdim bench quality` averages identity over every image of a row, styled or not, so a row that ignores
the style words keeps the face and one that follows them can lose it. This splits each prompt's images by
the style classifier's verdict, to show which of the two a row's table cells are made of.

    python benchmarks/tinyfaces_style_split.py runs/tinyfaces/bench ours dreambooth

It reads OUT/results/METHOD/*.json only, so it also runs on an unpacked results archive.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

IDENTITY, STYLE = "tinyfaces-identity", "tinyfaces-style"


def scores(folder: Path, method: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(identity, style) as (images, prompts) arrays over every identity of a row, and the prompts."""
    records = [json.loads(p.read_text()) for p in sorted((folder / "results" / method).glob("*.json"))]
    if not records:
        raise SystemExit(f"no results for '{method}' in {folder / 'results' / method}")
    prompts = json.loads((folder / "settings.json").read_text())["prompts"]
    identity = np.array([r["scores"][IDENTITY] for r in records], dtype=float)
    style = np.array([[np.nan if s is None else s for s in r["scores"][STYLE]] for r in records], dtype=float)
    return identity, style, prompts


def split(identity: np.ndarray, style: np.ndarray) -> list[tuple[float, float, float]]:
    """Per prompt: (share styled, mean identity where styled, mean identity where not); NaN when none."""
    out = []
    for k in range(identity.shape[1]):
        took = style[:, k] > 0.5
        styled = identity[took, k].mean() if took.any() else np.nan
        plain = identity[~took, k].mean() if (~took).any() else np.nan
        out.append((float(took.mean()), float(styled), float(plain)))
    return out


def main(folder: str, methods: list[str]) -> None:
    print("| row | prompt | styled | identity, styled | identity, not styled |")
    print("|---|---|---:|---:|---:|")
    for method in methods:
        identity, style, prompts = scores(Path(folder), method)
        for prompt, (share, styled, plain) in zip(prompts, split(identity, style), strict=True):
            print(f"| {method} | {prompt} | {share:.2f} | {styled:.2f} | {plain:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
