"""Quality gate of the base TinyFaces model: does it follow style prompts, and are its faces diverse?

    python -m lowdim_tinyfaces.quality [--model tinyfaces] [--per-style 32] [--out docs/]

``--out`` defaults to the plugin's docs/ in its checkout, and to the current folder when the package is installed
(a wheel's docs/ would be a stray top-level folder in site-packages that no distribution owns).

* style following: for every style prompt, the share of generated images that the committed style
  classifier assigns to the prompted style (gate: >= 80% for every style);
* diversity: mean pairwise identity-embedding cosine of generated "a photo of a face" images,
  against the same statistic for real renders of random identities (gate: generated faces are no
  more alike than real ones, within 0.05).

Writes quality.json, quality.md and quality_grid.png (rows: styles, columns: seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lowdim_tinyfaces.identity import Identity
from lowdim_tinyfaces.styles import STYLES, prompt_for
from lowdim_tinyfaces.world import render_tensor

STYLE_GATE = 0.80
DIVERSITY_MARGIN = 0.05


@torch.no_grad()
def generate(pipe, prompt: str, count: int, steps: int, guidance: float, seed: int) -> torch.Tensor:
    """(count, 3, H, W) in [-1, 1]: one image per seed seed..seed+count-1."""
    generators = [torch.Generator().manual_seed(seed + i) for i in range(count)]
    images = pipe(prompt, num_images_per_prompt=count, num_inference_steps=steps, guidance_scale=guidance,
                  generator=generators, output_type="np").images
    return torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    normed = torch.nn.functional.normalize(embeddings.float(), dim=1)
    similarity = normed @ normed.T
    count = len(normed)
    return float((similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1)))


def real_renders(count: int, seed: int, size: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    identities = [Identity.sample(rng) for _ in range(count)]
    return render_tensor(identities, "photo", list(range(seed, seed + count)), size=size)


def evaluate(model: str = "tinyfaces", per_style: int = 32, steps: int = 25, guidance: float = 4.0,
             seed: int = 1000) -> tuple[dict, dict[str, torch.Tensor]]:
    from lowdim_sd.loading import load_sd
    from lowdim_tinyfaces.metrics import load_identity_encoder, load_style_classifier

    sd = load_sd(model, device="cpu")
    classifier, encoder = load_style_classifier(), load_identity_encoder()
    samples, styles = {}, {}
    for index, style in enumerate(STYLES):
        images = generate(sd.pipe, prompt_for(style), per_style, steps, guidance, seed)
        samples[style] = images
        styles[style] = float((classifier.predict(images) == index).float().mean())
    real = real_renders(per_style, seed, sd.resolution)
    generated_sim = mean_pairwise_cosine(encoder.embed(samples["photo"]))
    real_sim = mean_pairwise_cosine(encoder.embed(real))
    report = {
        "model": model, "per_style": per_style, "steps": steps, "guidance": guidance, "seed": seed,
        "style_accuracy": styles,
        "style_gate": STYLE_GATE,
        "style_gate_passed": all(acc >= STYLE_GATE for acc in styles.values()),
        "photo_mean_pairwise_identity_cosine": {"generated": generated_sim, "real": real_sim},
        "diversity_gate_passed": generated_sim <= real_sim + DIVERSITY_MARGIN,
    }
    return report, samples


def write_report(report: dict, samples: dict[str, torch.Tensor], out: Path, columns: int = 8) -> None:
    from lowdim_sd.grid import save_grid
    from lowdim_sd.images import to_pil

    out.mkdir(parents=True, exist_ok=True)
    from lowdim.files import atomic_write

    text = json.dumps(report, indent=2)
    atomic_write(out / "quality.json", lambda temp: Path(temp).write_text(text))
    # One row per style: as many columns as the fewest samples a style has, so a row never holds two styles
    shown = min([columns, *(len(batch) for batch in samples.values())])
    images, labels = [], []
    for style, batch in samples.items():
        images += to_pil(batch[:shown])
        labels.append(prompt_for(style))
    save_grid(out / "quality_grid.png", images, ncol=shown, row_labels=labels, cell=64)
    rows = "\n".join(f"| {style} | `{prompt_for(style)}` | {acc:.0%} |"
                     for style, acc in report["style_accuracy"].items())
    sims = report["photo_mean_pairwise_identity_cosine"]
    markdown = (
        f"| style | prompt | classified as the prompted style |\n|---|---|---|\n{rows}\n\n"
        f"Style gate (every style >= {STYLE_GATE:.0%}): {'passed' if report['style_gate_passed'] else 'FAILED'}\n\n"
        f"Mean pairwise identity cosine of 'a photo of a face': generated {sims['generated']:.3f}, "
        f"real renders {sims['real']:.3f} (lower is more diverse); diversity gate: "
        f"{'passed' if report['diversity_gate_passed'] else 'FAILED'}\n")
    atomic_write(out / "quality.md", lambda temp: Path(temp).write_text(markdown))


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, a --per-style or --steps below 1 refused in one line before minutes of drawing."""
    from lowdim_tinyfaces import model_files  # the module attribute, which a test replaces

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tinyfaces")
    parser.add_argument("--per-style", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: the plugin's docs/ in its checkout, else the current folder)")
    args = parser.parse_args(argv)
    for flag, value in (("--per-style", args.per_style), ("--steps", args.steps)):
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    args.out = args.out or model_files.shipped_folder_default(Path(__file__).resolve().parents[1] / "docs") or Path()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    report, samples = evaluate(args.model, args.per_style, args.steps, args.guidance)
    write_report(report, samples, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
