"""Identity folders for lowdim's phases: one reference image per TinyFaces identity, like a face dataset.

``write_identities`` draws identities from one split of the metric models' identity split
(0 = train, 1 = validation, 2 = test), so precompute can use training identities and the quality
benchmark held-out ones that neither the hypernetwork nor the metric models ever saw.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .metrics.data import sample_levels, split_of
from .world import render

SPLITS = {"train": 0, "val": 1, "test": 2}
INDEX_FILE = ".identities.json"  # hidden: image-folder readers skip it silently


def write_identities(
    out: str | Path, count: int, split: str = "train", seed: int = 0, style: str = "photo", size: int = 32,
    renders: int = 1,
) -> list[Path]:
    """Write ``count`` identities as ``out/id-00000.png`` ... plus ``.identities.json`` (their factor levels).

    Deterministic in (count, split, seed). Another ``count`` draws another set (identities are sampled
    by rejection in batches sized by it), so keep the count fixed for a folder that weights refer to.
    ``renders`` > 1 writes ``out/id-00000/0.png`` ... instead: the same first image, then photos of the
    same person with other pose, light and clothes (the layout of a face dataset with several photos per
    person, which ``train-hypernet --key-pairs`` learns identity keys from).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS[split]])
    levels = sample_levels(count, rng, SPLITS[split])
    assert (split_of(levels) == SPLITS[split]).all()
    seeds = np.random.default_rng([seed, SPLITS[split], 1]).integers(0, 2**62, size=count, dtype=np.int64)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = _write_renders(out, levels, style, seeds, size, renders)
    record = {"split": split, "seed": seed, "style": style,
              "identities": {p.stem: [int(v) for v in row] for p, row in zip(paths, levels, strict=True)}}
    tmp = out / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out / INDEX_FILE)
    return paths


def _write_renders(out: Path, levels: np.ndarray, style: str, seeds: np.ndarray, size: int,
                   renders: int) -> list[Path]:
    """One image per identity (flat), or ``renders`` per identity in its own sub-folder; the identity paths."""
    more = np.random.default_rng([int(seeds[0]) if len(seeds) else 0, 2]).integers(
        0, 2**62, size=(max(renders - 1, 0), len(seeds)), dtype=np.int64)
    batches = [render(levels, style, seeds, size)] + [render(levels, style, row, size) for row in more]
    paths = []
    for index in range(len(levels)):
        if renders == 1:
            path = out / f"id-{index:05d}.png"
            Image.fromarray(batches[0][index]).save(path)
        else:
            path = out / f"id-{index:05d}"
            path.mkdir(exist_ok=True)
            for number, batch in enumerate(batches):
                Image.fromarray(batch[index]).save(path / f"{number}.png")
        paths.append(path)
    return paths


def read_levels(folder: str | Path) -> dict[str, np.ndarray]:
    """Factor levels of each identity in a folder written by :func:`write_identities`."""
    record = json.loads((Path(folder) / INDEX_FILE).read_text())
    return {name: np.asarray(v, dtype=np.int64) for name, v in record["identities"].items()}
