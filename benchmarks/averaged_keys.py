"""Issue 13 ladder rung 7: the retrieval head's keys averaged over several renders of each bank identity.

A bank key is the DINOv2 CLS feature of ONE render of its identity: pose, light and shirt (the
nuisance) move it as much as the face does, so a query's nearest key is partly a look-alike in
nuisance. Averaging each identity's normalised features over R renders with other nuisance seeds
keeps what is constant, the identity. The values (θ) are untouched.

    python benchmarks/averaged_keys.py HYPERNET WEIGHTS IDENTITIES OUT [--renders 4]

HYPERNET: a retrieval hypernetwork filled from WEIGHTS (a precompute folder) whose reference images
are IDENTITIES (a `lowdim tinyfaces-identities` folder, for the identities' factor levels). Writes
OUT/hypernet.safetensors. Then bench it on validation identities as benchmarks/hyper_ladder.sh does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def nuisance_seeds(name: str, renders: int) -> np.ndarray:
    """Seeds of the extra renders: fixed per identity, never the seed of its reference image."""
    base = int(name.split("-")[-1])
    return np.asarray([(base + 1) * 1_000_003 + 7919 * r for r in range(1, renders + 1)], dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hypernet", type=Path)
    parser.add_argument("weights", type=Path)
    parser.add_argument("identities", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--renders", type=int, default=4)
    args = parser.parse_args()

    from lowdim_tinyfaces.folders import read_levels
    from lowdim_tinyfaces.world import render_tensor

    from lowdim.hyper.storage import load_hypernet, read_hypernet, save_hypernet
    from lowdim_sd.weight_dataset import WeightDataset

    file = read_hypernet(args.hypernet)
    net = load_hypernet(file).eval()
    bank = WeightDataset(args.weights)
    if len(bank.names) != net.keys.shape[0]:
        raise SystemExit(f"{args.weights} has {len(bank.names)} identities, the bank {net.keys.shape[0]}")
    levels = read_levels(args.identities)
    keys = []
    with torch.no_grad():
        for item, name in enumerate(bank.names):
            stem = name.split("/")[-1]
            extra = render_tensor(np.repeat(levels[stem][None], args.renders, 0), "photo",
                                  nuisance_seeds(stem, args.renders), 32)
            images = torch.cat([bank.image(item)[None], extra])
            features = torch.nn.functional.normalize(net.encoder.features(images)[:, 0].float(), dim=-1)
            keys.append(features.mean(0))
    stored = torch.nn.functional.normalize(torch.stack(keys), dim=-1)
    moved = (stored * net.keys).sum(-1)
    print(f"cosine between each old and new key: mean {moved.mean():.3f}, min {moved.min():.3f}")
    net.keys.copy_(stored)
    extra = json.loads(file.header.get("extra", "{}"))
    extra.update(keys=f"mean of the reference and {args.renders} photo renders")
    save_hypernet(args.out / "hypernet.safetensors", net, {"model": file.header["model"],
                                                           "layer_set": file.header["layer_set"], **extra})
    print(f"wrote {args.out / 'hypernet.safetensors'}")


if __name__ == "__main__":
    main()
