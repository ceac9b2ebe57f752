"""Textual Inversion (Gal et al. 2022): new token vectors, written as rows of a weight.

A text encoder's input embedding is a matrix E (vocab, width) whose row t is token t's vector.
Textual Inversion learns n fresh vectors V (n, width) for n new tokens appended at the end of the
vocabulary and changes nothing else. Written as an update of that matrix (torch orientation: a
weight is (out, in), here (vocab, width)):

    ΔE = S · V        S (vocab, n): the one-hot selector of the last n rows (a frozen buffer)

so ΔE is zero outside those rows (exactly: a zero row of S times V is a sum of zeros) and E + ΔE
holds V in them when they start at zero, which is how the SD backend appends them. The LoRA form is
down = V (n, width), up = S, rank n. The math is that of any matrix, so the space also works on a
linear layer (it then writes n rows of its weight); the contract suite checks it there, and
through an ``nn.Embedding``.

The params start at zero (the contract's ΔE = 0); the backend then sets them to the init word's
embedding, as the paper does, since only it can read the tokenizer and the embedding.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from lowdim.errors import ConfigError
from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, Tensors, option, require

# CLIP reads 77 tokens, two of them BOS and EOS: more vectors than that cannot appear in one prompt.
MAX_VECTORS = 75


@dataclass
class TextualInversionConfig(SpaceConfig):
    vectors: int = option(1, "Number of token vectors learned for the identifier [V] (the paper uses 1).")
    init_word: str = option("face", "Word whose embedding the vectors start from; it must be one token.")

    def validate(self) -> None:
        require(isinstance(self.vectors, int) and 1 <= self.vectors <= MAX_VECTORS,
                f"ti: vectors must be an integer from 1 to {MAX_VECTORS}, got {self.vectors!r}")
        require(isinstance(self.init_word, str) and self.init_word.strip() == self.init_word != ""
                and len(self.init_word.split()) == 1,
                f"ti: init_word must be one word without spaces, got {self.init_word!r}")


class TextualInversionSpace(Space[TextualInversionConfig]):
    name = "ti"
    summary = "Textual Inversion: n new token vectors for [V] in the text encoder's input embedding (Gal et al. 2022)."
    config_class = TextualInversionConfig
    # Backends read this: the update writes new token rows, so they add the tokens before training and
    # load its files as embeddings (lowdim_sd.textual_inversion), not onto the default layer set.
    learns_tokens = True

    def _check(self, layer: LayerSpec) -> None:
        if layer.out_features < self.config.vectors:
            raise ConfigError(f"ti: layer {layer.name} has {layer.out_features} rows, fewer than the "
                              f"{self.config.vectors} token vectors asked for")

    def param_shapes(self, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
        self._check(layer)
        return {"vectors": (self.config.vectors, layer.in_features)}

    def init_params(self, layer: LayerSpec, generator: torch.Generator) -> Tensors:
        return {"vectors": torch.zeros(self.param_shapes(layer)["vectors"])}

    def make_buffers(self, layer: LayerSpec, seed: int) -> Tensors:
        self._check(layer)
        n = self.config.vectors
        rows = torch.zeros(layer.out_features, n, dtype=torch.float64)
        rows[layer.out_features - n:] = torch.eye(n, dtype=torch.float64)
        return {"rows": rows}

    def factors(self, params: Tensors, buffers: Tensors) -> tuple[Tensor, Tensor]:
        vectors = params["vectors"]
        rows = buffers["rows"].to(vectors.dtype)
        # A per-sample batch of vectors shares the one selector: a view, never a copy per sample.
        return vectors, rows.expand(*vectors.shape[:-2], *rows.shape)

    def rank(self, layer: LayerSpec) -> int:
        return self.config.vectors

    @classmethod
    def sample_config(cls, rng: random.Random, layer: LayerSpec) -> TextualInversionConfig:
        # min(out, in): the suite also puts the space on a layer of the transposed shape.
        return TextualInversionConfig(vectors=rng.randint(1, min(4, layer.out_features, layer.in_features)))
