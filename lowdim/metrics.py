"""The evaluation-metric contract shared by ``lowdim eval`` and ``lowdim bench quality``.

A plugin registers a metric with ``register(name, factory)`` in its ``register_metrics`` hook.
``factory(**options)`` returns an object with the ``Metric`` shape below; it raises
``MetricUnavailable`` when its model can't be had (offline, not installed), so a caller can skip
that metric with the reason and still run the others.

A metric may also say which of the paper's two questions it answers with a class attribute ``axis``:
``SUBJECT`` (how much the picture shows the reference's subject: Face Rec, DINO, CLIP-I) or ``PROMPT``
(how well it follows the prompt: CLIP-T). ``lowdim bench quality`` plots one against the other.

A metric may name the model it reads with an attribute ``model_source`` (a path or a hub id), which
``lowdim eval`` records in eval.json's ``settings``, so two reports scored with other models are told apart.

A metric that has no question to ask of some samples (a style metric and a prompt that names no style)
may say so with a method ``applies(sample) -> bool``: those samples are not scored and are counted as
"not asked", apart from its misses (``None``: it asked and found no answer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from lowdim.errors import LowdimError

if TYPE_CHECKING:  # PIL loads with the first image a metric reads, not with this module
    from PIL import Image


class MetricUnavailable(LowdimError):
    """A metric's model can't be loaded here; the message says what was tried and how to fix it."""


@dataclass(frozen=True)
class Sample:
    """One generated image with what it should match."""

    image: Image.Image  # RGB
    references: tuple[Image.Image, ...]  # the subject's
    prompt: str  # the prompt the image was generated from, identifier token included
    token: str | None = None  # the rare identifier token ("sks"); text metrics remove it
    name: str = ""  # where the image came from (a file name), so warnings can say which image

    def clean_prompt(self) -> str:
        """The prompt without the identifier token, as the paper's CLIP-T uses it."""
        if not self.token:
            return self.prompt
        words = [w for w in self.prompt.split() if w.strip(",.") != self.token]
        return " ".join(words)


SUBJECT = "subject"
PROMPT = "prompt"


def metric_axis(factory: Any) -> str | None:
    """``SUBJECT``, ``PROMPT`` or None (not declared), read from a metric or its registered factory."""
    axis = getattr(factory, "axis", None)
    return axis if axis in (SUBJECT, PROMPT) else None


@runtime_checkable
class Metric(Protocol):
    name: str  # the registry name, e.g. "tinyfaces-identity"
    column: str  # the table heading, e.g. "Face Rec"

    def score(self, samples: Sequence[Sample]) -> list[float | None]:
        """One score per sample; ``None`` is a miss (no face found, prompt not understood)."""
        ...


# -- aggregation shared by every metric and report ----------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A metric's column in a table: the mean over scored samples, how many missed, and how many it had no
    question for."""

    mean: float | None  # None when every sample missed
    scored: int
    misses: int
    not_asked: int = 0


def summarize(scores: Sequence[float | None], asked: Sequence[bool] | None = None) -> Summary:
    """Mean of the scores that are not misses; a NaN counts as a miss, never as a number. Samples with
    ``asked`` False (the metric does not apply to them) are neither scores nor misses."""
    asked = [True] * len(scores) if asked is None else list(asked)
    if len(asked) != len(scores):
        raise ValueError(f"{len(scores)} scores but {len(asked)} asked flags")
    mine = [s for s, a in zip(scores, asked, strict=True) if a]
    kept = [float(s) for s in mine if s is not None and not math.isnan(s)]
    mean = math.fsum(kept) / len(kept) if kept else None
    return Summary(mean=mean, scored=len(kept), misses=len(mine) - len(kept), not_asked=len(scores) - len(mine))


def applies(metric: Any, sample: Sample) -> bool:
    """Whether ``metric`` has a question for ``sample`` (True unless it defines ``applies`` and says no)."""
    check = getattr(metric, "applies", None)
    return True if check is None else bool(check(sample))


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two feature vectors (any shape, flattened); 0.0 if either is all zeros."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"cosine of vectors of different sizes: {x.size} and {y.size}")
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    # Clip: rounding can put the cosine of parallel vectors a hair above 1.
    return 0.0 if norms == 0.0 else float(np.clip(np.dot(x, y) / norms, -1.0, 1.0))


def mean_cosine(query: Any, references: Sequence[Any]) -> float | None:
    """Mean cosine of ``query`` against each reference (the paper averages over reference images)."""
    if not references:
        return None
    return math.fsum(cosine(query, ref) for ref in references) / len(references)
