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
    out: str | Path, count: int, split: str = "train", seed: int = 0, style: str = "photo", size: int = 32
) -> list[Path]:
    """Write ``count`` identities as ``out/id-00000.png`` ... plus ``.identities.json`` (their factor levels).

    Deterministic in (count, split, seed). Another ``count`` draws another set (identities are sampled
    by rejection in batches sized by it), so keep the count fixed for a folder that weights refer to.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS[split]])
    levels = sample_levels(count, rng, SPLITS[split])
    assert (split_of(levels) == SPLITS[split]).all()
    seeds = np.random.default_rng([seed, SPLITS[split], 1]).integers(0, 2**62, size=count, dtype=np.int64)
    images = render(levels, style, seeds, size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, pixels in enumerate(images):
        path = out / f"id-{index:05d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    record = {"split": split, "seed": seed, "style": style,
              "identities": {p.stem: [int(v) for v in row] for p, row in zip(paths, levels, strict=True)}}
    tmp = out / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out / INDEX_FILE)
    return paths


def read_levels(folder: str | Path) -> dict[str, np.ndarray]:
    """Factor levels of each identity in a folder written by :func:`write_identities`."""
    record = json.loads((Path(folder) / INDEX_FILE).read_text())
    return {name: np.asarray(v, dtype=np.int64) for name, v in record["identities"].items()}
