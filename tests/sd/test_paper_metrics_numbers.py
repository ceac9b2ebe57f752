"""DINO, CLIP-I and CLIP-T give their models' own numbers, not merely numbers consistent with themselves.

The expected scores are computed here without the metric: transformers' own CLIP processor and
``get_image_features``/``get_text_features``, and DreamBooth's DINO preprocessing (resize, [0, 1],
ImageNet normalisation) written out by hand for a model folder that has no image processor. The
pictures are non-square, not mirror-symmetric, and their three channels differ, so a squashed,
flipped or channel-swapped picture scores differently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_metric_models import save_tiny_clip, save_tiny_vit  # tests/, on the path as pytest puts it

from lowdim.metrics import PROMPT, SUBJECT, Sample, metric_axis
from lowdim.registry import get_registry
from lowdim_sd.eval.paper_metrics import ClipImageMetric, ClipTextMetric, DinoMetric

WORDS = ["a", "photo", "of", "face", "at", "night", "pencil", "sketch", "dog", "red", "sks"]
SIDE = 32  # both tiny models read 32x32 pictures
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """A random CLIP with its image processor and tokenizer, saved as a folder the metric loads by path."""
    return save_tiny_clip(tmp_path_factory.mktemp("numbers-clip") / "clip", WORDS, side=SIDE, seed=1)


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory) -> Path:
    """A random ViT saved without an image processor, so the metric's ImageNet fallback is what runs."""
    return save_tiny_vit(tmp_path_factory.mktemp("numbers-dino") / "dino", side=SIDE, seed=2)


def picture(seed: int, width: int = 48, height: int = 36) -> Image.Image:
    """Red grows left to right, green top to bottom, blue is noise: no symmetry, no two channels alike."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    blue = np.random.default_rng(seed).integers(0, 256, (height, width))
    shift = 40 * seed  # each seed its own picture in all three channels
    rgb = np.stack([(x + shift) % 256, (y * 0.7 + shift) % 256, blue], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def features(output: object) -> torch.Tensor:
    # transformers 4 returns the projected features; 5 a model output holding them as pooler_output.
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]


class ClipByHand:
    """CLIP's image and text embeddings straight from transformers' processor, tokenizer and model."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        self.net = CLIPModel.from_pretrained(folder).eval()
        self.processor = CLIPImageProcessor.from_pretrained(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)

    @torch.no_grad()
    def image(self, image: Image.Image) -> torch.Tensor:
        pixels = self.processor(images=[image], return_tensors="pt")["pixel_values"]
        return features(self.net.get_image_features(pixel_values=pixels))[0]

    @torch.no_grad()
    def text(self, text: str) -> torch.Tensor:
        tokens = self.tokenizer([text], return_tensors="pt")
        return features(self.net.get_text_features(**tokens))[0]


@torch.no_grad()
def dino_cls(folder: Path, image: Image.Image) -> torch.Tensor:
    """DreamBooth's DINO feature: the [CLS] token of an ImageNet-normalised picture resized to the model's side."""
    from transformers import ViTModel

    net = ViTModel.from_pretrained(folder, add_pooling_layer=False).eval()
    scaled = np.asarray(image.resize((SIDE, SIDE), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    pixels = torch.from_numpy((scaled - IMAGENET_MEAN) / IMAGENET_STD).permute(2, 0, 1)[None].float()
    return net(pixel_values=pixels).last_hidden_state[0, 0]


@pytest.mark.parametrize(("seed", "other"), [(0, 1), (3, 2)])
def test_dino_is_the_cosine_of_cls_tokens_of_imagenet_normalised_pictures(dino_folder, seed, other):
    a, b = picture(seed), picture(other, width=30, height=50)
    expected = cosine(dino_cls(dino_folder, a), dino_cls(dino_folder, b))
    score = DinoMetric(str(dino_folder), device="cpu").score([Sample(a, (b,), "x")])[0]
    assert score == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(("seed", "other"), [(0, 1), (3, 2)])
def test_clip_i_is_the_cosine_of_clips_own_image_features(clip_folder, seed, other):
    clip = ClipByHand(clip_folder)
    a, b = picture(seed), picture(other, width=30, height=50)
    score = ClipImageMetric(str(clip_folder), device="cpu").score([Sample(a, (b,), "x")])[0]
    assert score == pytest.approx(cosine(clip.image(a), clip.image(b)), abs=1e-5)


@pytest.mark.parametrize("prompt", ["a photo of a face at night", "a pencil sketch of a red dog"])
def test_clip_t_is_the_cosine_of_clips_own_image_and_text_features(clip_folder, prompt):
    clip = ClipByHand(clip_folder)
    image = picture(4)
    score = ClipTextMetric(str(clip_folder), device="cpu").score([Sample(image, (), prompt)])[0]
    assert score == pytest.approx(cosine(clip.image(image), clip.text(prompt)), abs=1e-5)


def test_clip_t_scores_every_sample_of_a_run_longer_than_its_batch(clip_folder):
    prompts = ["a photo of a face", "a red dog", "a pencil sketch", "a face at night", "a dog at night"]
    samples = [Sample(picture(seed), (), prompt) for seed, prompt in enumerate(prompts)]
    one_at_a_time = [ClipTextMetric(str(clip_folder), device="cpu", batch_size=1).score([s])[0] for s in samples]
    batched = ClipTextMetric(str(clip_folder), device="cpu", batch_size=2).score(samples)
    assert len(batched) == len(samples)
    assert batched == pytest.approx(one_at_a_time, abs=1e-5)


def test_every_registered_metric_declares_the_axis_it_measures():
    """`lowdim bench quality` plots subject fidelity across, prompt following up: each metric on its own axis."""
    expected = {"face-rec": SUBJECT, "dino": SUBJECT, "clip-i": SUBJECT, "clip-t": PROMPT,
                "tinyfaces-identity": SUBJECT, "tinyfaces-image": SUBJECT, "tinyfaces-style": PROMPT}
    axes = {name: metric_axis(entry.value) for name, entry in get_registry().metrics.items()}
    assert {name: axes.get(name) for name in expected} == expected
    assert None not in axes.values()  # any other installed metric declares one too
