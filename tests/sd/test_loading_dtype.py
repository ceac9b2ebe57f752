"""The dtype a model is loaded in reaches diffusers under the keyword the installed release takes: ``dtype``
from 0.40 (``torch_dtype`` is deprecated there and goes in 1.0), ``torch_dtype`` before."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lowdim_sd.ldm_checkpoint import save_single_file
from lowdim_sd.loading import dtype_keyword, load_sd

SUFFIXES = st.sampled_from(["", "rc1", ".dev0", "a2", "+local"])


@given(st.integers(0, 39), st.integers(0, 9), SUFFIXES)
def test_releases_before_0_40_get_torch_dtype(minor, patch, suffix):
    assert dtype_keyword(f"0.{minor}.{patch}{suffix}") == "torch_dtype"


@given(st.integers(0, 3), st.integers(0, 99), st.integers(0, 9), SUFFIXES)
def test_0_40_and_later_get_dtype(major, minor, patch, suffix):
    version = f"{major}.{minor}.{patch}{suffix}"
    assert dtype_keyword(version) == ("dtype" if (major, minor) >= (0, 40) else "torch_dtype")


@pytest.fixture(scope="module")
def single_file(tiny_sd, tmp_path_factory):
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    return save_single_file(model.pipe, tmp_path_factory.mktemp("dtype") / "tiny.safetensors")


@pytest.mark.parametrize("dtype, expected", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
@pytest.mark.parametrize("source", ["folder", "single file"])
def test_loads_in_the_asked_dtype_without_a_deprecation_warning(tiny_sd, single_file, source, dtype, expected):
    path, config = (tiny_sd, None) if source == "folder" else (single_file, str(tiny_sd))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_sd(str(path), device="cpu", dtype=dtype, config=config)
    assert model.dtype == expected
    for part in (model.pipe.unet, model.pipe.text_encoder, model.pipe.vae):
        assert {p.dtype for p in part.parameters()} == {expected}
    deprecations = [str(w.message) for w in caught if "dtype" in str(w.message).lower()]
    assert not deprecations


@pytest.mark.parametrize("bars", [True, False])
def test_loading_leaves_the_libraries_logging_as_it_found_it(tiny_sd, bars):
    """lowdim silences diffusers and transformers while it loads; a program that imports it keeps its own
    settings afterwards."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    for library in libraries:
        library.set_verbosity_info()
        library.enable_progress_bar() if bars else library.disable_progress_bar()
    try:
        load_sd(str(tiny_sd))
        assert [(library.get_verbosity(), library.is_progress_bar_enabled()) for library in libraries] == [
            (diffusers_logging.INFO, bars), (transformers_logging.INFO, bars)]
    finally:
        for library in libraries:
            library.set_verbosity_warning()
            library.enable_progress_bar()
