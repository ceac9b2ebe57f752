"""The ceiling of docs/results.md's table: TinyFaces renders of each held-out identity in each prompted style.

Scores renders (not generated images) with the same metrics as `lowdim bench quality`, so the table's
numbers can be read against what a perfect personalization would get.

    python benchmarks/tinyfaces_ceiling.py runs/tinyfaces/heldout
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_FOLDER = "runs/tinyfaces/heldout"  # what benchmarks/tinyfaces_tables.sh writes


def score_renders(folder: Path) -> None:
    # Imported here so that --help and a missing folder answer before torch and the metric models load.
    from lowdim_tinyfaces.folders import read_levels
    from lowdim_tinyfaces.metrics.plugin_metrics import prompted_style
    from lowdim_tinyfaces.world import styled_renders
    from PIL import Image

    from lowdim.metrics import Sample
    from lowdim.registry import get_registry
    from lowdim_sd.bench.quality import DEFAULT_METRICS, bench_prompts
    from lowdim_sd.bench.report import mean_se

    levels = read_levels(folder)
    prompts = [p.replace("[V]", "sks") for p in bench_prompts("tinyfaces")]
    metrics = {name: get_registry().metrics[name].value() for name in DEFAULT_METRICS}
    per_identity: dict[str, list[float]] = {name: [] for name in metrics}
    for name, images in styled_renders(levels, [prompted_style(p) for p in prompts]):
        reference = Image.open(f"{folder}/{name}.png").convert("RGB")
        samples = [Sample(Image.fromarray(img), (reference,), p, "sks") for img, p in zip(images, prompts, strict=True)]
        for metric_name, metric in metrics.items():
            scores = [s for s in metric.score(samples) if s is not None]
            per_identity[metric_name].append(sum(scores) / len(scores))
    for metric_name, values in per_identity.items():
        print(f"{metrics[metric_name].column}: {mean_se(values).text()} over {len(values)} identities")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("identities", type=Path, nargs="?", default=Path(DEFAULT_FOLDER),
                        help=f"a folder written by `lowdim tinyfaces-identities` (default: {DEFAULT_FOLDER})")
    folder = parser.parse_args(argv).identities
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder; write it with `lowdim tinyfaces-identities -o {folder} "
                         "--count 50 --split test` (benchmarks/tinyfaces_tables.sh does)")
    if not (folder / ".identities.json").is_file():
        raise SystemExit(f"{folder / '.identities.json'}: not found; the folder must be written by "
                         "`lowdim tinyfaces-identities`")
    score_renders(folder)


if __name__ == "__main__":
    main()
