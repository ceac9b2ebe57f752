"""A rank above what a layer can hold adds params that change nothing, which the optimizer still trains and the file
still stores: a warning a Python user sees, once per inject call. A dimension clamped to fit a narrow layer (LiDB's a
and b) wastes nothing and stays a note at INFO level."""

import logging
import warnings

import torch
from torch import nn

import lowdim


def _narrow(layers: int = 1) -> nn.Sequential:
    return nn.Sequential(*(nn.Linear(32, 32) for _ in range(layers)))


def _inject(model: nn.Module, space: lowdim.Space) -> tuple[lowdim.AdapterInfo, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapters = lowdim.inject(model, space, ["*"], seed=0)
    wasted = [w for w in caught if "add nothing" in str(w.message)]
    return adapters.info(), wasted


def test_a_rank_above_the_layer_warns_naming_the_layer():
    info, said = _inject(_narrow(), lowdim.get_space("lora", rank=64))
    assert len(said) == 1 and said[0].category is UserWarning
    message = str(said[0].message)
    assert message.startswith("adapter 'default'") and "rank=64 exceeds 0's 32x32" in message
    assert "1 layer" in message
    assert said[0].filename == __file__  # the inject call's line, not lowdim's
    assert len(info.notes) == 1  # the notes stay as they were


def test_many_wasting_layers_give_one_warning_with_the_first_layer_and_the_count():
    _, said = _inject(_narrow(layers=3), lowdim.get_space("lora", rank=64))
    assert len(said) == 1
    message = str(said[0].message)
    assert "exceeds 0's" in message and "3 layers" in message


def test_a_stack_whose_lora_exceeds_the_layer_warns():
    components = [{"space": "lidb", "config": {"a": 16, "b": 16}}, {"space": "lora", "config": {"rank": 64}}]
    _, said = _inject(_narrow(), lowdim.get_space("stack", components=components))
    assert len(said) == 1 and "rank=64 exceeds" in str(said[0].message)


def test_a_clamp_wastes_nothing_and_stays_at_info(caplog):
    with caplog.at_level(logging.INFO, logger="lowdim"):
        info, said = _inject(_narrow(), lowdim.get_space("lidb", a=100, b=50))
    assert said == [] and info.notes
    assert any("clamped" in record.getMessage() and record.levelno == logging.INFO for record in caplog.records)


def test_a_stack_with_only_a_clamp_does_not_warn():
    components = [{"space": "lidb", "config": {"a": 100, "b": 50}}, {"space": "lora", "config": {"rank": 4}}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lowdim.inject(_narrow(), lowdim.get_space("stack", components=components), ["*"], seed=0)
    assert [str(w.message) for w in caught] == []


def test_a_rank_that_fits_warns_nothing_and_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="lowdim"):
        info, said = _inject(_narrow(), lowdim.get_space("lora", rank=32))
    assert said == [] and info.notes == [] and caplog.records == []


def test_the_wasted_params_are_still_made_and_train():
    """The warning changes nothing else: peft does not clamp either, and a file's shapes must not depend on it."""
    model = _narrow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapters = lowdim.inject(model, lowdim.get_space("lora", rank=64), ["0"], seed=0)
    assert sum(p.numel() for p in adapters.parameters()) == 64 * (32 + 32)
    model(torch.randn(2, 32)).sum().backward()


def test_loading_a_file_whose_rank_exceeds_the_layer_does_not_warn(tmp_path, caplog):
    """Whoever loads a file did not choose its rank: advice about the optimizer is not theirs to follow."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = lowdim.inject(_narrow(), lowdim.get_space("lora", rank=64), ["*"], seed=0)
    path = tmp_path / "r64.safetensors"
    lowdim.save_adapter(path, trained)
    with caplog.at_level(logging.INFO, logger="lowdim"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = lowdim.load_adapter(path, _narrow())
    assert [str(w.message) for w in caught] == []
    assert len(info.notes) == 1 and "rank=64 exceeds 0's 32x32" in info.notes[0]  # still told where asked
    assert any("rank=64 exceeds" in record.getMessage() and record.levelno == logging.INFO
               for record in caplog.records)
