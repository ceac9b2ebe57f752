"""A plugin's SD model on a real (tiny) pipeline: `train` trains the backend's own default layer set, the one
`lowdim inspect` counts, and an alias is the backend itself, for its shipped hypernetwork and in the files it
writes (review B1, B2)."""

from __future__ import annotations

import types

import pytest

import lowdim
from lowdim.hookspecs import hookimpl
from lowdim.injection.select import LayerSet
from lowdim.plugins import BUILTIN_MODULES
from lowdim_sd.plugin import SDBackend

CROSS = LayerSet("cross", ("unet.*.attn2.to_q", "unet.*.attn2.to_v"))


class CrossOnly(SDBackend):
    layer_sets = {"cross": CROSS, "unet+text": SDBackend.layer_sets["unet+text"]}
    default_layer_set = "cross"


@pytest.fixture
def tiny_models(tiny_sd, make_hypernet):
    """`tinycross` (alias `tc`), with its own default set; `tinycanon` (alias `tinyalias`), shipping a
    hypernetwork made for it under its name."""
    shipped = make_hypernet(1, model="tinycanon")
    plugin = types.ModuleType("tiny_models")
    plugin.register_backends = hookimpl(lambda register: [
        register(CrossOnly("tinycross", str(tiny_sd), aliases=("tc",))),
        register(SDBackend("tinycanon", str(tiny_sd), aliases=("tinyalias",), default_hypernet=str(shipped)))])
    with lowdim.use_registry(lowdim.Registry.from_plugins([*BUILTIN_MODULES, "lowdim_sd.plugin", plugin])):
        yield


def test_train_trains_the_backends_own_default_set_that_inspect_counts(tiny_models, face, tmp_path, one_thread):
    from lowdim_cli.info_commands import inspect_sizes
    from lowdim_sd.train import TrainConfig
    from lowdim_sd.workflows import TrainJob, run_train

    trained = run_train(TrainJob(model="tc", images=[face], out=tmp_path / "t", config=TrainConfig(steps=1)),
                        progress=False)
    adapter = lowdim.read_adapter(trained.outputs[0])
    promised = inspect_sizes("tc", "lidb", None, {}, file_sizes=False).total.layers
    assert adapter.metadata["layer_set"] == "cross" and len(adapter.layers) == promised
    assert adapter.metadata["base_model"] == "tinycross"  # the backend's name, not the alias typed


def test_personalize_under_an_alias_uses_the_backends_own_hypernetwork(tiny_models, face, tmp_path, one_thread):
    from lowdim_sd.personalize import PersonalizeJob, personalize

    made = personalize(PersonalizeJob(model="tinyalias", image=face, out=tmp_path / "p", steps=1, preview=False,
                                      crop=False), progress=False)
    adapter = lowdim.read_adapter(made.adapter)
    assert adapter.metadata["base_model"] == "tinycanon"
