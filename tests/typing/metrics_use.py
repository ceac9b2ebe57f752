"""docs/eval.md's "One metric" from Python, for a type checker to read (never run): a registered metric's factory
and the samples it scores are typed. ``tests/test_typing_user_scripts.py`` runs mypy on it."""

from __future__ import annotations

from PIL import Image
from typing_extensions import assert_type

from lowdim.metrics import Metric, Sample
from lowdim.registry import get_registry


def score(face: Image.Image) -> list[float | None]:
    metric = get_registry().metrics["tinyfaces-image"].value()
    assert_type(metric, Metric)
    sample = Sample(image=face, references=(face,), prompt="a sks face", token="sks")
    assert_type(sample.image, Image.Image)
    assert_type(sample.references[0], Image.Image)
    scores = metric.score([sample])
    assert_type(scores, list[float | None])
    return scores
