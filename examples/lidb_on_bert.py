"""LiDB on a model that is not a diffusion model: a tiny BERT sequence classifier.

lowdim's adapters work on any ``torch.nn.Module`` whose target layers are ``nn.Linear`` (or 1x1
``nn.Conv2d``); layers are picked by glob patterns on their dotted module names. This example:

1. builds a tiny ``transformers.BertForSequenceClassification`` from a ``BertConfig`` (random
   init from a fixed torch seed, nothing is downloaded) and freezes all its weights;
2. injects a LiDB adapter (HyperDreamBooth §4.1: a rank-1 LoRA inside frozen random bases of
   width a=16, b=8) into every attention query and value projection
   (``*.attention.self.query``, ``*.attention.self.value``);
3. trains only the adapter for a few AdamW steps on a tiny synthetic task (label = whether the
   sequence contains a "marker" token), printing the loss as it drops;
4. saves the adapter with ``lowdim.save_adapter`` (96 trained numbers plus a seed: the frozen
   bases are regenerated from the seed on load);
5. builds a FRESH base model with the same seed, ``lowdim.load_adapter``s the file into it and
   checks that its logits equal the trained model's.

Run it with ``python examples/lidb_on_bert.py`` (a few seconds on a CPU). The functions are
reused by ``tests/test_other_models.py``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import lowdim

TARGETS = ["*.attention.self.query", "*.attention.self.value"]
VOCAB = 64
SEQ_LEN = 12
MARKER = 7  # the token whose presence decides the label
# BERT's default 0.02 leaves a random classifier head whose logits barely move when the hidden states
# change, so a few steps of any adapter would hardly lower the loss; 0.2 makes the demo visible.
INIT_RANGE = 0.2


def build_base(seed: int = 0) -> nn.Module:
    """A tiny, randomly initialised, frozen BERT classifier; the same seed gives the same weights."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=SEQ_LEN,
        num_labels=2,
        hidden_dropout_prob=0.0,  # deterministic forwards, so train and eval outputs agree
        attention_probs_dropout_prob=0.0,
        initializer_range=INIT_RANGE,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.requires_grad_(False)  # only the adapter trains
    return model.eval()


def make_data(n: int = 32, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random token ids; label 1 iff the marker token occurs (it is planted in half the rows)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(MARKER + 1, VOCAB, (n, SEQ_LEN), generator=generator)
    labels = torch.arange(n) % 2
    positions = torch.randint(1, SEQ_LEN, (n,), generator=generator)
    rows = labels.nonzero().flatten()
    ids[rows, positions[rows]] = MARKER
    ids[:, 0] = 1  # a fixed "[CLS]" token in front
    return ids, labels


def add_lidb(model: nn.Module, seed: int = 0, a: int = 16, b: int = 8) -> lowdim.Adapters:
    """Inject a LiDB adapter named 'default' into the attention query/value projections."""
    space = lowdim.get_space("lidb", a=a, b=b, rank=1)
    return lowdim.inject(model, space, TARGETS, seed=seed)


def train_lidb(model: nn.Module, steps: int = 30, lr: float = 0.1, seed: int = 0) -> list[float]:
    """Inject LiDB into ``model`` and train only its factors; returns the loss of every step."""
    adapters = add_lidb(model, seed=seed)
    optimizer = torch.optim.AdamW(adapters.parameters("default"), lr=lr, weight_decay=0.0)
    ids, labels = make_data(seed=seed)
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def logits(model: nn.Module, ids: Tensor) -> Tensor:
    return model(input_ids=ids).logits


@dataclass
class RoundTrip:
    """What ``round_trip`` saw: the training losses and the logits of three models on held-out inputs."""

    losses: list[float]
    trained: Tensor  # the model the adapter was trained in
    reloaded: Tensor  # a fresh base model after load_adapter
    base: Tensor  # the same fresh base model without any adapter
    trained_model: nn.Module
    reloaded_model: nn.Module


def round_trip(path: Path, seed: int = 0, steps: int = 30) -> RoundTrip:
    """Train LiDB in a base model, save it to ``path``, load it into a fresh base with the same seed."""
    trained = build_base(seed)
    losses = train_lidb(trained, steps=steps, seed=seed)
    lowdim.save_adapter(path, trained, dtype="fp32")
    fresh = build_base(seed)
    ids, _ = make_data(n=8, seed=seed + 1)  # inputs not seen in training
    base = logits(fresh, ids)
    lowdim.load_adapter(path, fresh, name="default")
    return RoundTrip(losses, logits(trained, ids), logits(fresh, ids), base, trained, fresh)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bert_lidb.safetensors"
        result = round_trip(path)
        info = lowdim.read_adapter(path)
        size = path.stat().st_size
    losses = result.losses
    for step in range(0, len(losses), 5):
        print(f"step {step:3d}  loss {losses[step]:.4f}")
    print(f"step {len(losses) - 1:3d}  loss {losses[-1]:.4f}")
    print(f"adapter: {len(info.layers)} layers, {info.num_params} trained numbers, file {size} bytes")
    effect = (result.trained - result.base).abs().max().item()
    diff = (result.trained - result.reloaded).abs().max().item()
    print(f"trained model vs plain base model:           max |logit difference| = {effect:.3g}")
    print(f"trained model vs fresh base + load_adapter:  max |logit difference| = {diff:.3g}")
    assert losses[-1] < losses[0], "the loss did not drop"
    assert not torch.allclose(result.trained, result.base), "the adapter has no effect on the outputs"
    assert torch.allclose(result.trained, result.reloaded, rtol=1e-5, atol=1e-6), "the reloaded adapter differs"
    print("OK: the loss dropped and the reloaded adapter reproduces the trained model's outputs")


if __name__ == "__main__":
    main()
