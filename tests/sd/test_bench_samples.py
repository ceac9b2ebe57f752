"""What `lowdim bench quality` hands its metrics: each picture's prompt with the job's token put in for [V], and the
token itself, so CLIP-T scores the prompt without the identifier, as the paper does (review DD q01, q02)."""

from __future__ import annotations

import numpy as np

from lowdim.metrics import Sample
from lowdim_sd.bench import quality
from lowdim_sd.bench.quality import QualityJob, run_quality
from lowdim_sd.images import load_image, to_pil


class PromptProbe:
    """A metric that scores nothing and keeps the samples it was asked about."""

    name = "probe"
    column = "Probe"

    def __init__(self) -> None:
        self.seen: list[Sample] = []

    def score(self, samples: list[Sample]) -> list[float | None]:
        self.seen += samples
        return [0.5] * len(samples)


def test_metrics_get_the_prompt_with_the_token_and_clip_t_reads_it_without(tiny_sd, identities, tmp_path,
                                                                           monkeypatch):
    probe = PromptProbe()
    monkeypatch.setattr(quality, "load_metrics", lambda names: ({"probe": probe}, {}))
    job = QualityJob(identities=identities, model=str(tiny_sd), out=tmp_path / "bench", metrics=[], methods=["base"],
                     prompts=["a [V] face at night", "a pencil sketch of [V]"], token="zwx", sample_steps=2, limit=1)
    run_quality(job)
    assert [(s.prompt, s.token) for s in probe.seen] == [("a zwx face at night", "zwx"),
                                                         ("a pencil sketch of zwx", "zwx")]
    assert [s.clean_prompt() for s in probe.seen] == ["a face at night", "a pencil sketch of"]
    # each picture is scored against its identity's photo as personalize reads it, never against itself (review FL)
    side = np.asarray(probe.seen[0].image).shape[0]
    photo = np.asarray(to_pil(load_image(identities / "id-0.png", side)[None])[0])
    for sample in probe.seen:
        assert len(sample.references) == 1 and np.array_equal(np.asarray(sample.references[0]), photo)
        assert not np.array_equal(photo, np.asarray(sample.image))
