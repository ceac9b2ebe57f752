"""A describer: words for what the subject looks like, read from a frozen image encoder's features.

A fast finetune on one photo binds the face to "[V]", and a prompt's style words can switch that pathway
off, so a styled picture draws a generic face (docs/disagreements.md, 2). A base model that learned
from captions naming looks ("with ginger long hair and round glasses") draws them in any style when asked
in words. A describer reads those looks from the one photo: for each group of classes (hair colour,
glasses, ...) a linear classifier over the encoder's pooled tokens, fit on images whose looks are known.
Which words a class becomes is the backend's business: its captions' grammar taught the base model.

The file is safetensors with the groups, their classes and the encoder it reads in the metadata, so it
is refused (naming the difference) for features of another encoder or setting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.files import atomic_save, read_checked

FORMAT = "lowdim.describer"
ENCODER_KEYS = ("encoder", "input_size", "normalize", "pool")  # what decides the features it reads


class Describer(nn.Module):
    """Per group, logits over its classes from features (B, tokens, width), standardised first."""

    mean: Tensor  # buffers, per flattened feature
    std: Tensor

    def __init__(self, groups: Mapping[str, Sequence[str]], tokens: int, width: int) -> None:
        super().__init__()
        if not groups or any(len(classes) < 2 for classes in groups.values()):
            raise LowdimError("a describer needs at least one group, each with two or more classes")
        self.groups = {name: list(classes) for name, classes in groups.items()}
        self.tokens, self.width = int(tokens), int(width)
        size = self.tokens * self.width
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))
        self.heads = nn.ModuleDict({name: nn.Linear(size, len(classes)) for name, classes in self.groups.items()})

    def _inputs(self, features: Tensor) -> Tensor:
        if features.dim() != 3 or features.shape[1:] != (self.tokens, self.width):
            raise LowdimError(f"the describer reads features of shape (images, {self.tokens}, {self.width}); "
                              f"got {tuple(features.shape)}")
        return (features.flatten(1).float() - self.mean) / self.std

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        inputs = self._inputs(features)
        return {name: head(inputs) for name, head in self.heads.items()}

    @torch.no_grad()
    def read(self, features: Tensor) -> list[dict[str, int]]:
        """The most likely class index of each group, per image."""
        chosen = {name: logits.argmax(1).tolist() for name, logits in self(features).items()}
        return [{name: chosen[name][row] for name in self.groups} for row in range(len(features))]


def fit_describer(features: Tensor, labels: Mapping[str, Tensor], groups: Mapping[str, Sequence[str]],
                  steps: int = 600, learning_rate: float = 1e-3, weight_decay: float = 1e-2,
                  seed: int = 0) -> Describer:
    """A describer fit by full-batch AdamW on cross-entropy: ``labels[group]`` holds each image's class index."""
    missing = [name for name in groups if name not in labels]
    if missing:
        raise LowdimError(f"no labels for the describer's group '{missing[0]}'")
    for name, classes in groups.items():
        if len(labels[name]) != len(features):
            raise LowdimError(f"group '{name}': {len(labels[name])} labels for {len(features)} images")
        if len(labels[name]) and not 0 <= int(labels[name].min()) <= int(labels[name].max()) < len(classes):
            raise LowdimError(f"group '{name}': a label outside its {len(classes)} classes")
    torch.manual_seed(seed)
    describer = Describer(groups, features.shape[1], features.shape[2])
    flat = features.flatten(1).float()
    describer.mean.copy_(flat.mean(0))
    describer.std.copy_(flat.std(0) + 1e-4)  # + eps: a constant feature would divide by zero
    optimizer = torch.optim.AdamW(describer.heads.parameters(), learning_rate, weight_decay=weight_decay)
    inputs = describer._inputs(features)
    for _ in range(steps):
        first, *rest = (nn.functional.cross_entropy(head(inputs), labels[name].long())
                        for name, head in describer.heads.items())  # one or more groups (Describer checks)
        loss = sum(rest, first)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return describer.eval()


def save_describer(path: str | Path, describer: Describer, encoder: Mapping[str, object],
                   notes: Mapping[str, str] | None = None) -> Path:
    """Write the describer with its groups and the encoder signature (``ENCODER_KEYS``) it reads."""
    missing = [key for key in ENCODER_KEYS if key not in encoder]
    if missing:
        raise LowdimError(f"the encoder signature lacks '{missing[0]}'")
    metadata = {"format": FORMAT, "groups": json.dumps(describer.groups), "tokens": str(describer.tokens),
                "width": str(describer.width), **{key: str(encoder[key]) for key in ENCODER_KEYS}, **(notes or {})}
    return atomic_save({name: tensor.detach().cpu().contiguous() for name, tensor in describer.state_dict().items()},
                       metadata, Path(path))


def load_describer(path: str | Path, encoder: Mapping[str, object] | None = None) -> tuple[Describer, dict]:
    """(describer, metadata) of a file; with ``encoder``, refused unless made for that encoder signature."""
    path = Path(path)
    tensors, metadata = read_checked(path, FORMAT, "describer", LowdimError)
    try:
        groups = json_text.loads(metadata["groups"])
        if not (isinstance(groups, dict) and all(isinstance(classes, list) for classes in groups.values())):
            raise ValueError("the groups are not an object of class lists")
        describer = Describer(groups, int(metadata["tokens"]), int(metadata["width"]))
    except (KeyError, ValueError, TypeError):
        raise LowdimError(f"{path}: its groups, tokens or width are missing or unreadable") from None
    except LowdimError as error:
        raise LowdimError(f"{path}: {error}") from None
    differing = [f"{key} {metadata.get(key)!r} (expected {str(value)!r})" for key, value in (encoder or {}).items()
                 if key in ENCODER_KEYS and metadata.get(key) != str(value)]
    if differing:
        raise LowdimError(f"{path}: made for another encoder setting: {'; '.join(differing)}")
    expected = describer.state_dict()
    wrong = next((name for name, tensor in expected.items()
                  if name not in tensors or tensors[name].shape != tensor.shape), None)
    if wrong is not None:
        raise LowdimError(f"{path}: tensor '{wrong}' is missing or has the wrong shape for its groups")
    describer.load_state_dict({name: tensors[name].float() for name in expected})
    return describer.eval(), metadata


def encoder_for(metadata: Mapping[str, str]):
    """The frozen encoder a describer file reads, rebuilt from its signature (packaged encoders load offline)."""
    from lowdim.hyper.encoder import ImageEncoder

    return ImageEncoder(metadata["encoder"], None, 1, frozen=True, input_size=int(metadata["input_size"]),
                        normalize=metadata["normalize"], pool=int(metadata["pool"])).eval()


@torch.no_grad()
def describe_images(describer: Describer, encoder, images: Tensor) -> list[dict[str, int]]:
    """Class indices per group for images (B, 3, H, W) in [-1, 1], through ``encoder``'s pooled tokens."""
    tokens = encoder.features(images)
    return describer.read(encoder.pooled(tokens) if encoder.pool else tokens)
