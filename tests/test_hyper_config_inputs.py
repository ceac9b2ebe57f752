"""HyperConfig's encoder_config from Python: a transformers config or its dict; anything else is one line."""

from __future__ import annotations

import inspect

import pytest

from lowdim.errors import ConfigError
from lowdim.hyper import HyperConfig


@pytest.mark.parametrize(("given", "said"), [
    ("tiny", r"got 'tiny' \(the tiny encoder's config is lowdim.hyper.TINY_ENCODER\)$"),
    (5, r"got 5$"),
    (["vit"], r"got \['vit'\]$"),
])
def test_an_encoder_config_that_is_no_config_is_one_line(given, said):
    with pytest.raises(ConfigError, match=r"^hyper: encoder_config must be a transformers config or its dict, "
                                          r"with a 'model_type'; " + said):
        HyperConfig(encoder_config=given)


def test_help_shows_what_train_hypernet_takes_as_weights():
    from lowdim_sd.hypertrain import HyperTrainJob

    assert inspect.signature(HyperTrainJob).parameters["weights"].annotation == \
        "str | os.PathLike[str] | Sequence[str | os.PathLike[str]]"
