"""Edge cases that the type hints made explicit: each is one LowdimError line, not a TypeError, AttributeError or
ZeroDivisionError from deep inside torch or the loop."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_sd.hypertrain_losses import evaluate
from lowdim_sd.loading import dtype_keyword
from lowdim_sd.optim import make_optimizer
from lowdim_sd.train import TrainConfig


def test_an_optimizer_without_a_rate_is_one_line() -> None:
    # TrainConfig's learning_rate None means "the run's default", which train() fills in (with_defaults)
    with pytest.raises(LowdimError, match="learning_rate"):
        make_optimizer([torch.nn.Parameter(torch.zeros(2))], TrainConfig())


def test_the_dtype_keyword_follows_the_diffusers_version() -> None:
    assert dtype_keyword("0.39.2") == "torch_dtype"
    assert dtype_keyword("0.40.0.dev0") == "dtype"
    with pytest.raises(LowdimError, match="diffusers x.40"):
        dtype_keyword("x.40")


class _NoIdentities:
    names: list[str] = []

    def __len__(self) -> int:
        return 0


def test_validating_on_no_identities_is_one_line() -> None:
    class Job:
        batch_size = 2

    with pytest.raises(LowdimError, match="no identities"):
        evaluate(torch.nn.Linear(2, 2), None, _NoIdentities(), Job(), {})


def test_learning_keys_for_a_head_keyed_by_its_cls_token_is_one_line(tmp_path) -> None:
    import lowdim
    from lowdim.hyper import HyperConfig, build_hypernet
    from lowdim.spaces.base import LayerSpec
    from lowdim_sd.retrieval_fill import learn_keys

    vit = {"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 32}
    config = HyperConfig.from_dict({"architecture": "retrieval", "encoder_config": vit, "bank_size": 1})
    head = build_hypernet(config, lowdim.get_space("lidb"), [LayerSpec("q", 16, 8)])
    for person in ("a", "b"):  # two people, two photos each: what key training reads
        (tmp_path / person).mkdir()
        for photo in ("1", "2"):
            Image.new("RGB", (16, 16)).save(tmp_path / person / f"{photo}.png")
    with pytest.raises(LowdimError, match="key_dim"):
        learn_keys(head, tmp_path, lambda path: torch.zeros(3, 16, 16), None, steps=1, seed=0, progress=False)
