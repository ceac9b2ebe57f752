"""The "retrieval" head: predict the θ of the training identity whose image looks most alike.

A regression hypernetwork must learn a smooth map from image to θ, but precomputed θ are not a smooth
function of the face: each is one of many adapters that render it, picked by its optimisation's path
(docs/ladder.md). A retrieval head does not interpolate between them: it
keeps the training identities' encoder features (keys) and θ (values), and answers an image with the
θ of its nearest key by cosine similarity. With a pretrained encoder that knows faces, that is an
adapter of a look-alike, which is a far better start for rank-relaxed finetuning (§4.3) than the mean.

It is a registered head like "transformer" (``HyperConfig(architecture="retrieval", bank_size=N)``),
saved and loaded by ``save_hypernet``/``load_hypernet`` with its bank as buffers; ``fill`` sets the
bank. Keys are the encoder's CLS token, or with ``key_dim`` a learned identity embedding
(``retrieval_keys``), trained by ``fit_key_projection`` before ``fill``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.hyper.config import HyperConfig
from lowdim.hyper.encoder import ImageEncoder, given_images
from lowdim.hyper.head import HyperHead
from lowdim.hyper.layout import Grouping, LayerTensors, param_layout, params_to_state, state_to_params
from lowdim.hyper.retrieval_keys import KeyProjection
from lowdim.spaces.base import LayerSpec, Space


class RetrievalHead(HyperHead):
    """θ of the nearest of ``bank_size`` stored identities by cosine of their keys (CLS token or learned)."""

    keys: Tensor  # a buffer, one unit key per stored identity

    def __init__(self, config: HyperConfig, space: Space, layers: Sequence[LayerSpec]) -> None:
        super().__init__()
        config.validate()
        if config.bank_size < 1:
            raise LowdimError("the retrieval head needs bank_size >= 1 (the number of stored identities)")
        self.config, self.space, self.layers = config, space, list(layers)
        self.groups = Grouping.build([param_layout(space, layer) for layer in self.layers], "shape")
        # The bank is only as good as the encoder's notion of "alike": it is always frozen.
        self.encoder = ImageEncoder(config.encoder, config.encoder_config, 1, frozen=True,
                                    input_size=config.encoder_input_size, normalize=config.encoder_normalize,
                                    pool=config.encoder_pool)
        self.encoder.proj.requires_grad_(False)
        self.encoder.norm.requires_grad_(False)
        self.key_projection: KeyProjection | None = None
        if config.key_dim:
            tokens = 1 + config.encoder_pool ** 2 if config.encoder_pool else 1
            self.key_projection = KeyProjection(tokens * self.encoder.width, config.key_hidden, config.key_dim)
        self.register_buffer("keys", torch.zeros(config.bank_size, config.key_dim or self.encoder.width))
        dtype = getattr(torch, config.bank_dtype)
        for index, (layout, members) in enumerate(zip(self.groups.layouts, self.groups.members, strict=True)):
            self.register_buffer(f"values{index}", torch.zeros(config.bank_size, len(members), layout.numel,
                                                               dtype=dtype))
        self.metadata = {}

    @torch.no_grad()
    def fill(self, features: Tensor, targets: LayerTensors) -> None:
        """Store the identities: backbone features (N, T, D) of their images and their θ ({layer: {param: (N,...)}})."""
        if len(features) != self.config.bank_size:
            raise LowdimError(f"the retrieval bank holds {self.config.bank_size} identities, got {len(features)}")
        self.keys.copy_(self.key(features))
        for index, values in enumerate(params_to_state(self.groups, self.layers, targets)):
            getattr(self, f"values{index}").copy_(values)

    @torch.no_grad()
    def add_render_keys(self, features: Tensor) -> None:
        """Key each stored θ by its reference and by what it renders: features (N, R, T, D) of R images made
        with θ_i; each key becomes the normalised sum of the reference's key and the renders' mean key."""
        if features.shape[:1] != self.keys.shape[:1]:
            raise LowdimError(f"render features for {features.shape[0]} identities; the bank holds "
                              f"{self.keys.shape[0]}")
        renders = torch.stack([self.key(features[:, r]) for r in range(features.shape[1])], dim=1)
        renders = torch.nn.functional.normalize(renders.mean(1), dim=-1)
        self.keys.copy_(torch.nn.functional.normalize(self.keys + renders, dim=-1))

    def stored_params(self, item: int) -> LayerTensors:
        """The θ stored for identity ``item``: {layer: {param: (1, ...)}}."""
        state = [getattr(self, f"values{i}")[item: item + 1].float() for i in range(len(self.groups.layouts))]
        return state_to_params(self.groups, self.layers, state)

    def key_input(self, features: Tensor) -> Tensor:
        """What a key is made of: the first token, plus the pooled grid with encoder_pool (features full or
        already pooled: pooling again is a no-op)."""
        return self.encoder.pooled(features) if self.encoder.pool else features[:, :1]

    @torch.no_grad()
    def key(self, features: Tensor) -> Tensor:
        """Unit keys (B, K) of backbone features (B, T, D)."""
        tokens = self.key_input(features)
        if self.key_projection is None:
            return torch.nn.functional.normalize(tokens[:, 0].float(), dim=-1)
        return self.key_projection(tokens.to(self.keys.device))

    def nearest(self, images: Tensor | None, features: Tensor | None = None) -> Tensor:
        """Index of the nearest stored identity for each image (B,)."""
        with torch.no_grad():
            features = self.encoder.features(given_images(images)) if features is None else features
        return (self.key(features) @ self.keys.T).argmax(dim=1)

    @overload
    def forward(self, images: Tensor | None, iterations: int | None = None, *, return_all: Literal[False] = False,
                init: LayerTensors | None = None, features: Tensor | None = None) -> LayerTensors: ...

    @overload
    def forward(self, images: Tensor | None, iterations: int | None = None, *, return_all: Literal[True],
                init: LayerTensors | None = None, features: Tensor | None = None) -> list[LayerTensors]: ...

    @overload
    def forward(self, images: Tensor | None, iterations: int | None = None, *, return_all: bool,
                init: LayerTensors | None = None, features: Tensor | None = None) -> LayerTensors | list[LayerTensors]:
        ...

    def forward(self, images: Tensor | None, iterations: int | None = None, *, return_all: bool = False,
                init: LayerTensors | None = None, features: Tensor | None = None) -> LayerTensors | list[LayerTensors]:
        """The nearest identity's θ for each image. There is nothing to refine: ``iterations`` and ``init``
        are accepted for the common head interface and ignored; ``return_all`` gives a one-element list."""
        chosen = self.nearest(images, features)
        state = [getattr(self, f"values{i}").index_select(0, chosen).float() for i in range(len(self.groups.layouts))]
        params = state_to_params(self.groups, self.layers, state)
        return [params] if return_all else params

    def num_predicted(self) -> int:
        return sum(self.space.num_params(layer) for layer in self.layers)


def build_retrieval(config: HyperConfig, space: Space, layers: Sequence[LayerSpec]) -> RetrievalHead:
    """Factory of the built-in 'retrieval' head (registered through register_heads)."""
    return RetrievalHead(config, space, layers)
