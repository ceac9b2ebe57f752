"""TinyFaces metrics as lowdim Metric plugins: identity, style accuracy and VAE image similarity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lowdim_tinyfaces import CARDINALITIES, STYLES, render_tensor
from lowdim_tinyfaces.metrics.plugin_metrics import (
    IdentityMetric,
    ImageMetric,
    StyleMetric,
    prompted_style,
    to_tensor,
)
from lowdim_tinyfaces.styles import prompt_for
from PIL import Image

from lowdim.metrics import Metric, MetricUnavailable, Sample
from lowdim.registry import get_registry

COUNT = 8


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    pixels = images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(p) for p in pixels]


@pytest.fixture(scope="module")
def levels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, CARDINALITIES, size=(COUNT, len(CARDINALITIES)))


@pytest.fixture(scope="module")
def references(levels) -> list[Image.Image]:
    return to_pil(render_tensor(levels, "photo", list(range(COUNT))))


def renders(levels, style: str) -> list[Image.Image]:
    """The same identities in another style, with other nuisance seeds (pose, light, shirt)."""
    return to_pil(render_tensor(levels, style, list(range(100, 100 + COUNT))))


def test_the_plugin_registers_metric_factories():
    registry = get_registry()
    for name, column in (("tinyfaces-identity", "Identity"), ("tinyfaces-style", "Style acc"),
                         ("tinyfaces-image", "Image sim")):
        assert registry.metrics[name].plugin == "tinyfaces"
        metric = registry.metrics[name].value()
        assert isinstance(metric, Metric) and (metric.name, metric.column) == (name, column)


@pytest.mark.parametrize("style", ["photo", "sketch", "night"])
def test_identity_scores_same_identity_renders_above_different_ones(levels, references, style):
    metric = IdentityMetric()
    generated = renders(levels, style)
    same = metric.score([Sample(g, (r,), "") for g, r in zip(generated, references, strict=True)])
    other = metric.score([Sample(g, (references[(i + 1) % COUNT],), "") for i, g in enumerate(generated)])
    assert min(same) > max(other)
    first, second, both = metric.score([Sample(generated[0], (references[0],), ""),
                                        Sample(generated[0], (references[1],), ""),
                                        Sample(generated[0], (references[0], references[1]), "")])
    assert both == pytest.approx((first + second) / 2, abs=1e-6)  # the mean over references
    assert metric.score([Sample(generated[0], (), "")]) == [None]


def test_style_accuracy_is_one_for_the_prompted_style_and_zero_for_another(levels):
    metric = StyleMetric()
    for style in STYLES:
        scores = metric.score([Sample(g, (), prompt_for(style, "sks face"), "sks") for g in renders(levels, style)])
        assert np.mean(scores) >= 0.9, style
    sketches = renders(levels, "sketch")
    assert metric.score([Sample(g, (), "a sks face at night") for g in sketches]) == [0.0] * COUNT
    assert metric.score([Sample(sketches[0], (), "a sks face in a cyberpunk city")]) == [None]
    assert metric.applies(Sample(sketches[0], (), "a sks face at night"))
    assert not metric.applies(Sample(sketches[0], (), "a sks face in a cyberpunk city"))


@pytest.mark.parametrize(("prompt", "style"), [
    ("a photo of a sks face", "photo"), ("A pencil sketch of a [V] face.", "sketch"),
    ("a  pop-art poster of a sks dog", "popart"), ("a sks face at night", "night"),
    ("a sks face on a red background", "red_background"), ("a sks face wearing a hat", "hat"),
    ("a photo of a sks face at night", None),  # two templates fit: no single style asked for
    ("a sks face in a cyberpunk city", None), ("", None),
    # a full stop or "!" after a template with words after the subject (review FL, TP9)
    ("a sks face at night.", "night"), ("a sks face wearing a hat!", "hat"),
    ("a sks face on a red background .", "red_background"), ("a photo of a sks face.", "photo")])
def test_the_prompted_style_is_found_with_any_subject(prompt, style):
    assert prompted_style(prompt) == style


def test_image_similarity_uses_vae_latents(levels, references):
    metric = ImageMetric()
    generated = renders(levels, "photo")
    self_score = metric.score([Sample(references[0], (references[0],), "")])[0]
    assert self_score == pytest.approx(1.0, abs=1e-5)
    same = metric.score([Sample(g, (r,), "") for g, r in zip(generated, references, strict=True)])
    other = metric.score([Sample(g, (references[(i + 1) % COUNT],), "") for i, g in enumerate(generated)])
    assert np.mean(same) > np.mean(other)
    assert metric.latents(references[:2]).shape == (2, 4 * 8 * 8)
    # the cosine of the VAE encoder's latent means, not of its std, which also scores 1 on itself (review FL, TP8)
    with torch.no_grad():
        means = metric.vae.encode(to_tensor([generated[0], *references[:2]])).latent_dist.mean.flatten(1).double()
    expected = [float(torch.nn.functional.cosine_similarity(means[0], means[k], dim=0)) for k in (1, 2)]
    assert metric.score([Sample(generated[0], tuple(references[:2]), "")])[0] == pytest.approx(np.mean(expected),
                                                                                           abs=1e-5)


def test_images_of_any_size_are_scaled_to_32px_in_minus_one_to_one():
    big = Image.new("RGB", (100, 60), (255, 0, 0))
    batch = to_tensor([big, Image.new("L", (32, 32), 0)])
    assert batch.shape == (2, 3, 32, 32)
    assert torch.allclose(batch[0, 0], torch.ones(32, 32)) and torch.allclose(batch[1], -torch.ones(3, 32, 32))


def test_missing_weights_are_unavailable(tmp_path):
    with pytest.raises(MetricUnavailable, match="identity encoder could not be loaded") as refused:
        IdentityMetric(directory=str(tmp_path))
    # the folder the user named is what to fix: reinstalling would not change it
    assert f"check the directory option ({tmp_path})" in str(refused.value) and "reinstall" not in str(refused.value)
    with pytest.raises(MetricUnavailable, match="style classifier"):
        StyleMetric(directory=str(tmp_path))
    with pytest.raises(MetricUnavailable, match="VAE"):
        ImageMetric(model=str(tmp_path))


def test_lowdim_eval_runs_the_tinyfaces_metrics(tmp_path, levels, references, capsys):
    import json

    from lowdim_cli.main import main

    references[0].save(tmp_path / "me.png")
    entries = []
    for style in ("photo", "sketch"):
        renders(levels, style)[0].save(tmp_path / f"{style}.png")
        entries.append({"image": f"{style}.png", "prompt": prompt_for(style, "[V] face")})
    renders(levels, "photo")[0].save(tmp_path / "free.png")  # a prompt that asks for no style
    entries.append({"image": "free.png", "prompt": "a [V] face in a cyberpunk city"})
    (tmp_path / "prompts.json").write_text(json.dumps({"references": ["me.png"], "images": entries}))
    code = main(["eval", str(tmp_path), "--metrics", "tinyfaces-identity,tinyfaces-style,tinyfaces-image",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    style = report["metrics"]["tinyfaces-style"]
    assert (style["mean"], style["scored"], style["misses"], style["not_asked"]) == (1.0, 2, 0, 1)
    assert report["images"][2]["not_asked"] == ["tinyfaces-style"] and "not_asked" not in report["images"][0]
    assert report["metrics"]["tinyfaces-identity"]["mean"] > 0.8
    assert report["metrics"]["tinyfaces-image"]["scored"] == 3
    printed = " ".join(capsys.readouterr().out.split())
    assert "Style acc" in printed and "not asked" in printed
    markdown = (tmp_path / "out" / "eval.md").read_text()
    assert "| not asked | 0 | 1 | 0 |" in markdown and "| free.png |" in markdown and "| n/a |" in markdown
