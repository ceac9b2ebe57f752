"""Rung 19 of docs/ladder.md: are LiDB targets learnable once B_train is frozen at its shared start?

A LiDB adapter is ΔW = A_aux·A_train·B_train·B_aux, rank 1 per layer. Trained freely, two faces' ΔW can
differ by a rescaling or a turn of the rank-1 factors as much as by the face, and a regression averages
those away. With B_train frozen at the init every identity shares (the same seed), ΔW = (A_aux·a)·vᵀ is
linear in the trained a, so averages of targets are targets. Two steps:

    # phase 0 with B_train frozen (any `lowdim precompute` arguments after the word)
    python benchmarks/frozen_b_targets.py precompute -m tinyfaces -i IDS -o W --steps 200 --lr 1e-2 \\
        --limit 272 --shared-noise --batch-subjects 68 --device cpu --dtype fp32
    # how much of ΔW a ridge regression predicts, beside the shipped bank's θ of the same identities
    python benchmarks/frozen_b_targets.py compare W

`compare` fits, on 80% of the folder's identities (names id-NNNNN, the shipped bank's row NNNNN), a
kernel ridge from the true identity factors and from the DINOv2 CLS token to ΔW (through Gram matrices:
ΔW is never formed), and prints the held-out error as a fraction of predicting the training mean, for
the folder's targets and for the shipped bank's. The bank was made by the same recipe with B_train free
on the shipped model, from `lowdim tinyfaces-identities --count 1088 --split train`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

BANK = Path(__file__).resolve().parents[1] / "plugins/lowdim-tinyfaces/lowdim_tinyfaces/hypernet/hypernet.safetensors"
LAMBDAS = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1000.0)


def precompute(arguments: list[str]) -> None:
    import lowdim_sd.modes as modes
    from lowdim_cli.main import script

    trainable_of = modes.adapter_trainable

    def frozen_b(*args, **kwargs):
        trainable = trainable_of(*args, **kwargs)
        tensors = trainable.adapters.tensors(trainable.name)
        frozen = {id(params["B_train"]) for params in tensors.values()}
        trainable.parameters = [p for p in trainable.parameters if id(p) not in frozen]
        for params in tensors.values():
            params["B_train"].requires_grad_(False)  # AdamW skips a parameter without a gradient
        return trainable

    modes.adapter_trainable = frozen_b  # precompute imports it at each batch, so it gets this one
    sys.argv = ["lowdim", "precompute", *arguments]
    script()


def gram(space, layers, params_of, count: int) -> torch.Tensor:
    """⟨ΔW_i, ΔW_j⟩ summed over layers: for rank 1, (u_i·u_j)(v_i·v_j)."""
    from lowdim import functional as F

    total = torch.zeros(count, count, dtype=torch.float64)
    for layer in layers:
        buffers = space.make_buffers(layer, F.layer_seed(0, layer.name))
        params = params_of(layer.name)
        up = (buffers["A_aux"].double() @ params["A_train"].double())[..., 0]
        down = (params["B_train"].double() @ buffers["B_aux"].double())[:, 0]
        total += (up @ up.T) * (down @ down.T)
    return total


def held_out(x: torch.Tensor, g: torch.Tensor, train: int) -> float:
    """Best held-out error of a kernel ridge from x, as a fraction of the training mean's, knowing the
    targets only through their Gram matrix g."""
    count = len(g)
    x = (x - x[:train].mean(0)) / (x[:train].std(0) + 1e-6)
    x = torch.cat([x, torch.ones(count, 1, dtype=x.dtype)], 1)
    centre = torch.eye(count, dtype=g.dtype)
    centre[:, :train] -= 1.0 / train
    gc = centre @ g @ centre.T  # the Gram of each target minus the training mean
    kx = x[:train] @ x[:train].T
    best = float("inf")
    for strength in LAMBDAS:
        ridge = kx + strength * float(kx.diag().mean()) * torch.eye(train, dtype=x.dtype)
        w = x[train:] @ x[:train].T @ torch.linalg.inv(ridge)
        error = gc[train:, train:].diag() - 2 * (w * gc[train:, :train]).sum(1) + (w @ gc[:train, :train] * w).sum(1)
        best = min(best, float(error.mean() / gc[train:, train:].diag().mean()))
    return best


def compare(folder: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from target_predictability import encoder_features, factor_features

    from lowdim.hyper.storage import load_hypernet
    from lowdim_sd.hypertrain_io import all_targets
    from lowdim_sd.weight_dataset import WeightDataset

    data = WeightDataset(folder)
    head = load_hypernet(BANK)
    rows = [head.stored_params(int(name.split("-")[-1])) for name in data.names]
    targets = all_targets(data)
    count, train = len(data.names), int(0.8 * len(data.names))
    grams = {"shipped bank (B_train free)": gram(head.space, head.layers, lambda n: {
        k: torch.cat([r[n][k] for r in rows]) for k in rows[0][n]}, count),
        folder: gram(head.space, head.layers, lambda n: targets[n], count)}
    factors, dino = factor_features(data), encoder_features(data)
    print(f"{count} identities, {count - train} held out; held-out error / the training mean's (1: nothing learned)")
    for label, g in grams.items():
        print(f"{label}: factors -> ΔW {held_out(factors, g, train):.3f}, DINOv2 CLS -> ΔW "
              f"{held_out(dino, g, train):.3f}")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("precompute", "compare"):
        sys.exit(__doc__)
    precompute(sys.argv[2:]) if sys.argv[1] == "precompute" else compare(sys.argv[2])
