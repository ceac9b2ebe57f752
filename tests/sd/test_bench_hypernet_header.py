"""bench quality refuses a hypernetwork made for another model from its header, before its model loads."""

from __future__ import annotations

import pytest
from hypertrain_jobs import TINY_VIT  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

class ModelLoaded(Exception):
    """What the patched load_sd raises: the bench got as far as loading its model."""


def _lidb_hypernet(path, model: str):
    """A hypernetwork of the bench rows' space (LiDB, its default options) and layer set, made for ``model``."""
    from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet

    net = HyperNetwork(HyperConfig(encoder_config=TINY_VIT, width=16, attention_heads=2), lowdim.get_space("lidb"),
                       [lowdim.LayerSpec("a.to_q", 8, 8)])
    return save_hypernet(path, net, {"model": model, "layer_set": "unet+text"}, adapter_seed=0)


def _bench(identities, tiny_sd, out, hypernet) -> int:
    return main(["bench", "quality", "-i", str(identities), "-m", str(tiny_sd), "-o", str(out),
                 "--methods", "only-hyper", "--prompt", "a [V] face", "--metrics", "tinyfaces-style",
                 "--hypernet", str(hypernet)])


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr("lowdim_sd.loading.load_sd", refuse)


@pytest.mark.usefixtures("no_model_load")
def test_bench_refuses_another_models_hypernetwork_before_loading_its_own(identities, tiny_sd, tmp_path, capsys):
    file = _lidb_hypernet(tmp_path / "other.safetensors", "some-org/another-model")
    assert _bench(identities, tiny_sd, tmp_path / "out", file) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Warning:")]
    assert len(err) == 1, err
    assert str(file) in err[0] and "another-model" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()  # refused before the bench claims its folder


@pytest.mark.usefixtures("no_model_load")
def test_bench_goes_on_to_load_its_model_with_a_hypernetwork_made_for_it(identities, tiny_sd, tmp_path):
    file = _lidb_hypernet(tmp_path / "own.safetensors", str(tiny_sd))
    with pytest.raises(ModelLoaded):
        _bench(identities, tiny_sd, tmp_path / "out", file)
