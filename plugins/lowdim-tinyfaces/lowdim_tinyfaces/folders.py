"""Identity folders for lowdim's phases: one reference image per TinyFaces identity, like a face dataset.

``write_identities`` draws identities from one split of the metric models' identity split
(0 = train, 1 = validation, 2 = test), so precompute can use training identities and the quality
benchmark held-out ones that neither the hypernetwork nor the metric models ever saw.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from lowdim import json_text
from lowdim.errors import LowdimError

from .metrics.data import sample_levels, split_of
from .world import render

SPLITS = {"train": 0, "val": 1, "test": 2}
INDEX_FILE = ".identities.json"  # hidden: image-folder readers skip it silently
ENTRY = re.compile(r"^id-\d{5,}(\.png)?$")  # an identity: a flat image, or a sub-folder of its photos


def write_identities(
    out: str | Path, count: int, split: str = "train", seed: int = 0, style: str = "photo", size: int = 32,
    renders: int = 1, overwrite: bool = False,
) -> list[Path]:
    """Write ``count`` identities as ``out/id-00000.png`` ... plus ``.identities.json`` (their factor levels).

    Deterministic in (count, split, seed). Another ``count`` draws another set (identities are sampled
    by rejection in batches sized by it), so keep the count fixed for a folder that weights refer to.
    ``renders`` > 1 writes ``out/id-00000/0.png`` ... instead: the same first image, then photos of the
    same person with other pose, light and clothes (the layout of a face dataset with several photos per
    person, which ``train-hypernet --key-pairs`` learns identity keys from).

    A folder that already holds identities is refused (LowdimError) unless it holds exactly these, or
    ``overwrite`` is set: then every earlier identity goes, so the folder never mixes two draws.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    out = Path(out)
    settings = _settings(count, split, seed, style, size, renders)
    names = _names(count, renders)
    if holds_exactly(out, count, split, seed, style, size, renders):
        return [out / name for name in names]  # a rerun: what is there already is what it would write
    earlier = _earlier(out)
    if earlier and not overwrite:
        raise LowdimError(f"{out}: already holds {_what(out, earlier)}; pick a new --out or pass --overwrite "
                          f"to replace them")
    rng = np.random.default_rng([seed, SPLITS[split]])
    levels = sample_levels(count, rng, SPLITS[split])
    assert (split_of(levels) == SPLITS[split]).all()
    seeds = np.random.default_rng([seed, SPLITS[split], 1]).integers(0, 2**62, size=count, dtype=np.int64)
    batches = _render_all(levels, style, seeds, size, renders)  # before anything on disk changes
    out.mkdir(parents=True, exist_ok=True)
    # The index goes first and comes back last: a run cut short leaves no index that vouches for a mix.
    for path in sorted(earlier, key=lambda p: p.name != INDEX_FILE):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    paths = [_write_identity(out / name, [batch[index] for batch in batches], renders)
             for index, name in enumerate(names)]
    record = {**settings,
              "identities": {p.stem: [int(v) for v in row] for p, row in zip(paths, levels, strict=True)}}
    tmp = out / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out / INDEX_FILE)
    return paths


def holds_exactly(out: str | Path, count: int, split: str = "train", seed: int = 0, style: str = "photo",
                  size: int = 32, renders: int = 1) -> bool:
    """Whether ``out`` holds exactly the identities :func:`write_identities` would write there, and nothing
    an earlier run with other settings left (read from its index and entry names; no image is read)."""
    out = Path(out)
    try:
        record = json_text.loads((out / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return False
    wanted = _settings(count, split, seed, style, size, renders)
    if not isinstance(record, dict) or any(record.get(key) != value for key, value in wanted.items()):
        return False  # also a folder of an older lowdim, whose index lacks count, size and renders
    names = _names(count, renders)
    found = {path.name: path.is_dir() for path in out.iterdir() if ENTRY.match(path.name)}
    return found == {name: renders > 1 for name in names} and sorted(record.get("identities", {})) == [
        Path(name).stem for name in names]


def _settings(count: int, split: str, seed: int, style: str, size: int, renders: int) -> dict:
    return {"split": split, "seed": seed, "style": style, "count": count, "size": size, "renders": renders}


def _names(count: int, renders: int) -> list[str]:
    return [f"id-{index:05d}" + (".png" if renders == 1 else "") for index in range(count)]


def _earlier(out: Path) -> list[Path]:
    """What an earlier run wrote to ``out``: its index and identity entries (nothing else is touched)."""
    if not out.is_dir():
        return []
    return [path for path in out.iterdir() if path.name == INDEX_FILE or ENTRY.match(path.name)]


def identities_word(count: int) -> str:
    """``count`` with its noun, singular for one: "1 identity", "3 identities"."""
    return f"{count} {'identity' if count == 1 else 'identities'}"


def _what(out: Path, earlier: list[Path]) -> str:
    """The earlier identities in a few words, from their index when it reads."""
    entries = sum(1 for path in earlier if path.name != INDEX_FILE)
    try:
        record = json_text.loads((out / INDEX_FILE).read_text())
        return (f"{identities_word(len(record['identities']))} ({record['split']} split, seed {record['seed']}, "
                f"style {record['style']})")
    except (OSError, ValueError, TypeError, KeyError):
        return f"{identities_word(entries)} without a readable {INDEX_FILE} (a run cut short?)"


def _render_all(levels: np.ndarray, style: str, seeds: np.ndarray, size: int, renders: int) -> list[np.ndarray]:
    """``renders`` batches of images: the first from ``seeds``, the others other pose, light and clothes."""
    more = np.random.default_rng([int(seeds[0]) if len(seeds) else 0, 2]).integers(
        0, 2**62, size=(max(renders - 1, 0), len(seeds)), dtype=np.int64)
    return [render(levels, style, seeds, size)] + [render(levels, style, row, size) for row in more]


def _write_identity(path: Path, images: list[np.ndarray], renders: int) -> Path:
    """One identity: its image at ``path`` (flat), or its ``renders`` photos in the sub-folder ``path``."""
    if renders == 1:
        _save_png(images[0], path)
    else:
        path.mkdir(exist_ok=True)
        for number, image in enumerate(images):
            _save_png(image, path / f"{number}.png")
    return path


def _save_png(image: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: image-folder readers skip a half-written one
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def read_levels(folder: str | Path) -> dict[str, np.ndarray]:
    """Factor levels of each identity in a folder written by :func:`write_identities`."""
    record = json_text.loads((Path(folder) / INDEX_FILE).read_text())
    return {name: np.asarray(v, dtype=np.int64) for name, v in record["identities"].items()}
