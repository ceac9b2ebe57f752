"""TinyFaces' analogues of the paper's metrics, as ``lowdim.metrics.Metric`` factories for ``lowdim eval``.

- ``tinyfaces-identity`` ("Identity", like Face Rec): cosine of identity-encoder embeddings,
  generated vs each reference, averaged over references.
- ``tinyfaces-style`` ("Style acc", like CLIP-T): 1.0 when the style classifier sees the style the
  prompt asked for, 0.0 when not; a prompt matching no style template, or two, asks for no style: "not
  asked" (``applies`` is False), left out of the mean and apart from the misses.
- ``tinyfaces-image`` ("Image sim", like DINO / CLIP-I): cosine of the TinyFaces VAE encoder's
  latent means (flattened), generated vs each reference.

Every picture, generated or reference, is read as ``lowdim personalize`` reads a reference: its centre
square, resized to the models' 32x32, scaled to [-1, 1]. Registered by ``plugin.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from lowdim.errors import first_line
from lowdim.metrics import PROMPT, SUBJECT, MetricUnavailable, Sample, mean_cosine

from ..styles import STYLE_TEMPLATES
from .nets import WEIGHTS_DIR

SIZE = 32
T = TypeVar("T")


def to_tensor(images: Sequence[Any], size: int = SIZE) -> Tensor:
    """PIL images as a float32 (N, 3, size, size) batch in [-1, 1], the range every TinyFaces model reads.

    Each is read as personalize reads a reference: its centre square, resized (never squashed or cut to a corner).
    """
    # The reading load_image gives personalize: a reference must score as the face the model was given.
    from lowdim_sd.images import picture_tensor

    if not images:
        return torch.zeros(0, 3, size, size)
    return torch.stack([picture_tensor(image, size) for image in images])


def _words(text: str) -> str:
    """A regex for these words with any run of whitespace between them."""
    return r"\s+".join(map(re.escape, text.split()))


def _template_pattern(template: str) -> re.Pattern[str]:
    before, _, after = template.partition("{subject}")
    gap_before = r"\s+" if before.strip() else ""
    gap_after = r"\s+" if after.strip() else ""
    return re.compile(rf"{_words(before)}{gap_before}(?P<subject>.+?){gap_after}{_words(after)}", re.IGNORECASE)


_PATTERNS = {style: _template_pattern(template) for style, template in STYLE_TEMPLATES.items()}


def prompted_style(prompt: str) -> str | None:
    """The style whose template the prompt fills with some subject; None when no template, or several, fit.

    "a pencil sketch of a sks face" -> "sketch"; "a sks dog at night" -> "night". A prompt that two
    templates explain ("a photo of a sks face at night") names no single style, so Style acc does not ask it
    ("not asked", as for a prompt naming none), rather than counting a miss.
    """
    text = " ".join(prompt.split()).rstrip(" .!")
    found = [style for style, pattern in _PATTERNS.items() if pattern.fullmatch(text)]
    return found[0] if len(found) == 1 else None


def _load(what: str, loader: Callable[[], T], directory: str | None = None) -> T:
    """``loader()``; a missing or unreadable model file becomes ``MetricUnavailable``, so lowdim eval
    skips this metric with the reason instead of failing the whole run."""
    try:
        return loader()
    except (OSError, ValueError, KeyError) as error:
        reason = first_line(error)
        # Reinstalling mends the shipped files only: a folder the user named must be fixed where it is.
        fix = f"check the directory option ({directory})" if directory else "reinstall lowdim-tinyfaces"
        raise MetricUnavailable(f"the TinyFaces {what} could not be loaded ({reason}); {fix}") from None


class IdentityMetric:
    name, column = "tinyfaces-identity", "Identity"
    axis = SUBJECT

    def __init__(self, directory: str | None = None) -> None:
        from . import load_identity_encoder

        self.encoder = _load("identity encoder", lambda: load_identity_encoder(directory), directory)
        self.model_source = str(directory or WEIGHTS_DIR)  # what lowdim eval's settings record

    def score(self, samples: Sequence[Sample]) -> list[float | None]:
        generated = self.encoder.embed(to_tensor([s.image for s in samples])).numpy()
        return [mean_cosine(g, list(self.encoder.embed(to_tensor(s.references)).numpy()))
                for g, s in zip(generated, samples, strict=True)]


class StyleMetric:
    name, column = "tinyfaces-style", "Style acc"
    axis = PROMPT

    def __init__(self, directory: str | None = None) -> None:
        from . import load_style_classifier

        self.classifier = _load("style classifier", lambda: load_style_classifier(directory), directory)
        self.model_source = str(directory or WEIGHTS_DIR)

    def applies(self, sample: Sample) -> bool:
        """Only a prompt that names one style asks for one: the others are "not asked", not misses."""
        return prompted_style(sample.prompt) is not None

    def score(self, samples: Sequence[Sample]) -> list[float | None]:
        predicted = self.classifier.predict(to_tensor([s.image for s in samples])).tolist()
        styles = self.classifier.styles
        out: list[float | None] = []
        for index, sample in zip(predicted, samples, strict=True):
            wanted = prompted_style(sample.prompt)
            out.append(None if wanted is None else float(styles[index] == wanted))
        return out


def _load_vae(source: str, device: str) -> Any:
    from diffusers import AutoencoderKL  # optional: only this metric needs diffusers

    return AutoencoderKL.from_pretrained(source, subfolder="vae", use_safetensors=True).to(device).eval()


class ImageMetric:
    name, column = "tinyfaces-image", "Image sim"
    axis = SUBJECT

    def __init__(self, model: str | None = None, device: str = "cpu") -> None:
        from .. import model_files

        if device == "auto":  # lowdim eval's default: the GPU if there is one
            device = "cuda" if torch.cuda.is_available() else "cpu"
        source = self.model_source = str(model or model_files.model_path())
        try:
            self.vae = _load(f"VAE ({source}/vae)", lambda: _load_vae(source, device))
        except ImportError as error:
            raise MetricUnavailable(f"tinyfaces-image needs diffusers ({error}); pip install 'lowdim[sd]'") from None
        self.device = device

    @torch.no_grad()
    def latents(self, images: Sequence[Any]) -> np.ndarray:
        """Flattened latent means (N, 4*8*8) of the VAE encoder."""
        if not images:
            return np.zeros((0, 0), np.float32)
        pixels = to_tensor(images).to(self.device, self.vae.dtype)
        mean = self.vae.encode(pixels).latent_dist.mean
        return mean.flatten(1).float().cpu().numpy()

    def score(self, samples: Sequence[Sample]) -> list[float | None]:
        generated = self.latents([s.image for s in samples])
        return [mean_cosine(g, list(self.latents(s.references))) for g, s in zip(generated, samples, strict=True)]


FACTORIES = {
    IdentityMetric.name: IdentityMetric,
    StyleMetric.name: StyleMetric,
    ImageMetric.name: ImageMetric,
}
