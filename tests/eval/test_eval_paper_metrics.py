"""DINO, CLIP-I and CLIP-T on tiny random transformers models loaded by path; offline skipping; the registry."""

from __future__ import annotations

import time

import pytest

from lowdim.metrics import Metric, MetricUnavailable, Sample, cosine
from lowdim.option_words import command_line
from lowdim.registry import get_registry
from lowdim_sd.eval import hub
from lowdim_sd.eval.paper_metrics import (
    PAPER_METRICS,
    ClipImageMetric,
    ClipTextMetric,
    DinoMetric,
)


@pytest.fixture(scope="module")
def dino(tiny_dino) -> DinoMetric:
    return DinoMetric(str(tiny_dino), device="cpu")


@pytest.fixture(scope="module")
def clip_i(tiny_clip) -> ClipImageMetric:
    return ClipImageMetric(str(tiny_clip), device="cpu")


@pytest.fixture(scope="module")
def clip_t(tiny_clip) -> ClipTextMetric:
    return ClipTextMetric(str(tiny_clip), device="cpu")


@pytest.mark.parametrize("metric_name", ["dino", "clip_i"])
def test_image_metrics_are_one_on_the_reference_itself_and_average_over_references(metric_name, request, noise):
    metric = request.getfixturevalue(metric_name)
    a, b, c = noise(0), noise(1), noise(2)
    self_score, ab, ac, both = metric.score([Sample(a, (a,), "x"), Sample(a, (b,), "x"), Sample(a, (c,), "x"),
                                             Sample(a, (b, c), "x")])
    assert self_score == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= ab <= 1.0 and ab < self_score
    assert both == pytest.approx((ab + ac) / 2, abs=1e-6)
    assert metric.score([Sample(a, (), "x")]) == [None]  # no reference: a miss
    assert isinstance(metric, Metric)


def test_image_metrics_batch_without_changing_scores(tiny_dino, noise):
    images = [noise(i) for i in range(5)]
    samples = [Sample(im, (images[0],), "x") for im in images]
    one_by_one = DinoMetric(str(tiny_dino), device="cpu", batch_size=1).score(samples)
    batched = DinoMetric(str(tiny_dino), device="cpu", batch_size=4).score(samples)
    assert batched == pytest.approx(one_by_one, abs=1e-5)


@pytest.mark.parametrize(("seed", "other"), [(0, 1), (2, 5)])
def test_dino_is_the_cosine_of_the_vits_cls_tokens_as_in_dreambooth(dino, tiny_dino, noise, seed, other):
    """DreamBooth's DINO compares [CLS] tokens; a pooled token gives other numbers than the paper's."""
    import torch
    from transformers import ViTModel

    net = ViTModel.from_pretrained(str(tiny_dino), add_pooling_layer=False).eval()

    def cls(image):
        pixels = dino.processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            return net(pixel_values=pixels).last_hidden_state[0, 0].numpy()

    a, b = noise(seed), noise(other)
    assert dino.score([Sample(a, (b,), "x")])[0] == pytest.approx(cosine(cls(a), cls(b)), abs=1e-5)


def test_clip_t_removes_the_identifier_before_scoring(clip_t, noise):
    image = noise(3)
    with_token, plain, token_kept, other = clip_t.score([
        Sample(image, (), "a sks face at night", token="sks"), Sample(image, (), "a face at night"),
        Sample(image, (), "a sks face at night"), Sample(image, (), "a pencil sketch of a dog")])
    assert with_token == pytest.approx(plain, abs=1e-6)
    assert token_kept != pytest.approx(plain, abs=1e-6)  # the text encoder does see the token
    assert other != pytest.approx(plain, abs=1e-6)
    assert all(-1.0 <= s <= 1.0 for s in (with_token, token_kept, other))


def test_clip_i_and_clip_t_share_one_loaded_model(clip_i, clip_t):
    assert clip_i.clip is clip_t.clip


def test_a_missing_local_model_is_unavailable_with_the_flag_to_fix_it(tmp_path):
    with command_line(), pytest.raises(MetricUnavailable, match="DINO model folder .*not found.*--dino-model"):
        DinoMetric(str(tmp_path / "nowhere" / "dino"), device="cpu")  # from Python: EvalJob's options, AK3
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(MetricUnavailable, match="could not load the CLIP model from"):
        ClipImageMetric(str(broken), device="cpu")


def test_an_uncached_hub_id_offline_is_skipped_at_once(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    start = time.monotonic()
    with command_line(), pytest.raises(MetricUnavailable, match="not in the Hugging Face cache .*--clip-model PATH"):
        ClipTextMetric("lowdim-tests/no-such-clip-model", device="cpu")
    assert time.monotonic() - start < 10


def test_hub_offline_mode_means_unreachable(monkeypatch):
    hub.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        assert hub.hub_reachable() is False
    finally:
        hub.hub_reachable.cache_clear()


@pytest.mark.parametrize(("source", "is_path"), [
    ("facebook/dino-vits16", False), ("clip", False), ("./clip", True), ("/models/clip", True),
    ("~/clip", True), ("models/openai/clip", True)])
def test_hub_ids_and_paths_are_told_apart(source, is_path):
    assert hub.looks_like_path(source) is is_path


def test_the_paper_metrics_are_registered_with_their_columns():
    registry = get_registry()
    assert set(PAPER_METRICS) <= set(registry.metrics)
    assert PAPER_METRICS == ("face-rec", "dino", "clip-i", "clip-t")
    assert {registry.metrics[n].plugin for n in PAPER_METRICS} == {"sd"}
    columns = {n: registry.metrics[n].value.column for n in PAPER_METRICS}
    assert columns == {"face-rec": "Face Rec", "dino": "DINO", "clip-i": "CLIP-I", "clip-t": "CLIP-T"}
