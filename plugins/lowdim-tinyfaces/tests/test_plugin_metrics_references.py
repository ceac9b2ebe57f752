"""What the plugin's metrics are said to do: Image sim (``tinyfaces-image``) averages over all of an image's
references, as Identity does and docs/eval.md says ("every image metric averages over an image's references"), not the
first one alone, nor the last; and a prompt naming no style, or two, is "not asked" of Style acc, as its docs say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lowdim_tinyfaces import CARDINALITIES, render_tensor
from lowdim_tinyfaces.metrics import plugin_metrics
from lowdim_tinyfaces.metrics.plugin_metrics import ImageMetric, StyleMetric, prompted_style
from PIL import Image

from lowdim.metrics import Sample, cosine

COUNT = 3


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    pixels = images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(p) for p in pixels]


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    """Three identities: a generated picture and two references of others, so each cosine differs."""
    levels = np.random.default_rng(3).integers(0, CARDINALITIES, size=(COUNT, len(CARDINALITIES)))
    return to_pil(render_tensor(levels, "photo", list(range(COUNT))))


def test_image_similarity_is_the_mean_over_every_reference(pictures):
    metric = ImageMetric()
    generated, *references = pictures
    latent = metric.latents([generated])[0]
    each = [cosine(latent, metric.latents([reference])[0]) for reference in references]
    assert abs(each[0] - each[1]) > 1e-3  # else first-only and the mean could not be told apart
    both, reversed_order = metric.score([Sample(generated, tuple(references), ""),
                                         Sample(generated, tuple(reversed(references)), "")])
    assert both == pytest.approx(float(np.mean(each)), abs=1e-6)
    assert reversed_order == pytest.approx(both, abs=1e-6)


@pytest.mark.parametrize("prompt", ["a sks face in a cyberpunk city", "a photo of a sks face at night"])
def test_a_prompt_naming_no_style_or_two_is_not_asked_as_the_docs_say(pictures, prompt):
    assert not StyleMetric().applies(Sample(pictures[0], (), prompt))  # not asked: no miss counted
    docs = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text(encoding="utf-8")
    row = next(line for line in docs.splitlines() if line.startswith("| `tinyfaces-style`"))
    said = " ".join([row, plugin_metrics.__doc__ or "", prompted_style.__doc__ or ""])
    assert "not asked" in row and "is a miss" not in said and "a miss when" not in said
