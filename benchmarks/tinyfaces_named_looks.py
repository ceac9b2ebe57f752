"""Does a TinyFaces base model draw the looks its prompt names, in every style?

A personalized face can keep its hair, skin and glasses across styles only as well as the base model
can draw them when asked in words. For N validation identities this asks for all six named looks in
each style ("a face with tan skin, ginger long hair, violet eyes and round glasses at night"), draws one
image per identity and style from fixed noise, and reads each image with the TinyFaces identity
encoder's factor heads. It prints, per style, how often each named look is read back, and the identity
cosine against a photo render of the same identity; the last row is the mean over the styles
(docs/ladder.md, rung 13's table).

    python benchmarks/tinyfaces_named_looks.py runs/r14/tfv2/model      # a model folder, or
    python benchmarks/tinyfaces_named_looks.py tinyfaces                # the shipped model
    python benchmarks/tinyfaces_named_looks.py tinyfaces --plain        # the style prompt alone: chance
    python benchmarks/tinyfaces_named_looks.py renders                  # TinyFaces' own renders: the ceiling
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from lowdim_tinyfaces.captions import ATTRIBUTE_PHRASES, describe
from lowdim_tinyfaces.identity import FACTOR_NAMES
from lowdim_tinyfaces.metrics import load_identity_encoder
from lowdim_tinyfaces.metrics.data import sample_levels, seeds
from lowdim_tinyfaces.model_files import not_a_model_folder
from lowdim_tinyfaces.styles import STYLES, prompt_for
from lowdim_tinyfaces.world import render_tensor

NAMED = tuple(ATTRIBUTE_PHRASES)
VALIDATION_SPLIT = 1
GENERATION_SEED = 1234


def prompts_for(levels: np.ndarray, style: int, plain: bool) -> list[str]:
    return [prompt_for(style, "face" + ("" if plain else describe(level, set(NAMED)))) for level in levels]


def read_back(predicted: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Share of images whose factor heads read each named look as the prompt's level, in NAMED's order."""
    columns = [FACTOR_NAMES.index(name) for name in NAMED]
    return (predicted[:, columns] == levels[:, columns]).mean(axis=0)


def summary(per_style: dict[str, tuple[np.ndarray, float]]) -> list[str]:
    """Markdown rows: one per style, then the mean over styles."""
    lines = ["| style | " + " | ".join(NAMED) + " | identity |", "|---" * (len(NAMED) + 2) + "|"]
    for style, (accuracy, identity) in per_style.items():
        lines.append(f"| {style} | " + " | ".join(f"{a:.2f}" for a in accuracy) + f" | {identity:.3f} |")
    accuracy = np.mean([a for a, _ in per_style.values()], axis=0)
    identity = float(np.mean([i for _, i in per_style.values()]))
    lines.append("| mean | " + " | ".join(f"{a:.2f}" for a in accuracy) + f" | {identity:.3f} |")
    return lines


def load_pipeline(model: str):
    from diffusers import StableDiffusionPipeline
    from lowdim_tinyfaces.model_files import model_path

    folder = model_path() if model == "tinyfaces" else Path(model)
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(model: str, count: int, plain: bool = False, steps: int = 25) -> dict[str, tuple[np.ndarray, float]]:
    """Per style: (read-back share of each named look, mean identity cosine against a photo render)."""
    pipe = None if model == "renders" else load_pipeline(model)
    encoder = load_identity_encoder()
    levels = sample_levels(count, np.random.default_rng(5), split=VALIDATION_SPLIT)
    photos = render_tensor(levels, [0] * count, seeds(count, np.random.default_rng(6)), 32)
    with torch.no_grad():
        reference = encoder.embed(photos)
    results = {}
    for style_id, style in enumerate(STYLES):
        if pipe is None:  # other nuisance seeds than the photos'
            images = render_tensor(levels, [style_id] * count, seeds(count, np.random.default_rng(7)), 32)
        else:
            generator = torch.Generator().manual_seed(GENERATION_SEED)
            images = pipe(prompts_for(levels, style_id, plain), num_inference_steps=steps, guidance_scale=4.0,
                          generator=generator, output_type="pt").images * 2 - 1
        with torch.no_grad():
            accuracy = read_back(encoder.predict_factors(images).numpy(), levels)
            identity = torch.nn.functional.cosine_similarity(encoder.embed(images), reference).mean().item()
        results[style] = (accuracy, identity)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a TinyFaces model folder, 'tinyfaces' (the shipped one) or 'renders'")
    parser.add_argument("--count", type=int, default=48, help="validation identities (default 48)")
    parser.add_argument("--plain", action="store_true", help="the style prompt alone, naming no looks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25,
                        help="denoising steps per image (default 25, the tables' setting; fewer to try the script)")
    args = parser.parse_args(argv)
    problem = args.model not in ("tinyfaces", "renders") and not_a_model_folder(Path(args.model))
    if problem:
        parser.error(problem)
    torch.set_num_threads(args.threads)
    print("\n".join(summary(measure(args.model, args.count, args.plain, args.steps))))


if __name__ == "__main__":
    main()
