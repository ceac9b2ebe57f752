"""The TinyFaces describer: reads hair, skin and glasses from one photo and says them in caption words.

The shipped base model learned captions such as "a face with olive skin, ginger long hair and round
glasses at night" (``captions.py``), so it draws named looks in every style. ``describe_face`` reads those
looks from the photo with a linear describer (``lowdim.hyper.describer``) over the same frozen DINOv2
tokens the hypernetwork reads, and writes them in the captions' own grammar: `lowdim personalize` puts
the words after "[V] face" in its preview prompts. The metric models never take part: their identity
encoder scores the pictures and must not also choose the words.

Make the shipped file again (the cached features of the hypernetwork's 7,088 training photos: 3,000 people x 2
photos and 1,088 training identities, as benchmarks/tinyfaces_tables.sh writes them; docs/results.md):

    F=runs/tinyfaces; python -m lowdim_tinyfaces.looks --features $F/features.safetensors $F/people $F/train-ids
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lowdim import json_text

from .captions import ATTRIBUTE_PHRASES, describe
from .identity import FACTOR_NAMES
from .model_files import describer_path

# The looks a preview names: what the issue asks every style to keep, and what a 32 px picture shows.
NAMED = ("skin_tone", "hair_colour", "hair_style", "glasses")
GROUPS: dict[str, list[str]] = {
    factor: [phrase or "none" for phrase in ATTRIBUTE_PHRASES[factor]] for factor in NAMED}


def words_for(classes: dict[str, int]) -> str:
    """" with pale skin, ginger long hair and round glasses" for the class indices of ``GROUPS``."""
    levels = np.zeros(len(FACTOR_NAMES), dtype=np.int64)
    for factor, index in classes.items():
        levels[FACTOR_NAMES.index(factor)] = index
    return describe(levels, set(classes))


@lru_cache(maxsize=2)
def _loaded(path: str):
    from lowdim.hyper.describer import encoder_for, load_describer

    describer, metadata = load_describer(path)
    return describer, encoder_for(metadata)


def describe_face(image: Tensor, path: Path | None = None) -> str:
    """The looks of one face image (3, H, W) in [-1, 1] as caption words, e.g. " with tan skin and blue bob hair"."""
    from lowdim.hyper.describer import describe_images

    describer, encoder = _loaded(str(path or describer_path()))
    return words_for(describe_images(describer, encoder, image[None].float())[0])


def training_set(feature_file: Path, folders: list[Path]) -> tuple[Tensor, dict[str, Tensor], dict]:
    """(features, labels per group, encoder signature) of every photo in identity folders that the file holds."""
    from safetensors import safe_open

    from lowdim.hyper.describer import ENCODER_KEYS
    from lowdim_sd.feature_file import image_key
    from lowdim_sd.images import load_image

    from .folders import read_levels

    with safe_open(str(feature_file), "pt") as handle:
        metadata, stored = handle.metadata(), handle.get_tensor("features").float()
    index = {key: row for row, key in enumerate(json_text.loads(metadata["keys"]))}
    rows, labels = [], []
    for folder in folders:
        for name, levels in sorted(read_levels(folder).items()):
            photos = sorted((folder / name).glob("*.png")) if (folder / name).is_dir() else [folder / f"{name}.png"]
            for photo in photos:
                row = index.get(image_key(load_image(photo, 32)))
                if row is not None:
                    rows.append(row)
                    labels.append(levels)
    if not rows:
        raise SystemExit(f"{feature_file}: holds the features of no photo in {', '.join(map(str, folders))}")
    label_levels = torch.from_numpy(np.stack(labels))
    signature = {key: metadata[key] for key in ENCODER_KEYS}
    return stored[rows], {f: label_levels[:, FACTOR_NAMES.index(f)] for f in NAMED}, signature


def main(argv: list[str] | None = None) -> None:
    from lowdim.hyper.describer import fit_describer, save_describer

    parser = argparse.ArgumentParser(description="Fit the TinyFaces describer on cached encoder features.")
    parser.add_argument("folders", nargs="+", type=Path, help="identity folders written by tinyfaces-identities")
    parser.add_argument("--features", type=Path, required=True, help="their `lowdim encoder-features` file")
    parser.add_argument("--out", type=Path, default=describer_path())
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args(argv)
    features, labels, signature = training_set(args.features, args.folders)
    describer = fit_describer(features, labels, GROUPS, steps=args.steps)
    save_describer(args.out, describer, signature, {"images": str(len(features))})
    print(f"fit on {len(features)} photos; wrote {args.out}")


if __name__ == "__main__":
    main()
