"""``SDModel.from_pipeline``: a diffusers pipeline the caller already has, wrapped as lowdim's model without a
second load: its device and dtype read from its weights, its progress bar and parameters left as they are, the
layer view ``load_sd`` gives, and a pipeline that cannot be one model refused in one line."""

from __future__ import annotations

import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_sd.loading import SDModel, load_sd
from lowdim_sd.tiny import build_tiny_pipeline


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """One torch thread, as the other SD tests: tiny models run no faster on more."""


@pytest.fixture
def pipe(tiny_sd):
    """The tiny folder as diffusers itself loads it: trainable parameters, its own progress bar."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None, requires_safety_checker=False)


def test_a_loaded_pipeline_is_named_by_its_folder_and_read_where_it_is(pipe, tiny_sd):
    model = SDModel.from_pipeline(pipe)
    assert model.pipe is pipe
    assert (model.name, model.source) == (str(tiny_sd), str(tiny_sd))
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.float32)
    loaded = load_sd(str(tiny_sd))
    assert model.base_model_id == loaded.base_model_id  # its adapters record what load_sd's do
    assert list(model.modules.keys()) == ["unet", "text_encoder"]
    assert model.modules.state_dict().keys() == loaded.modules.state_dict().keys()  # the same layer names


def test_the_pipelines_dtype_is_read_from_its_weights(pipe):
    assert SDModel.from_pipeline(pipe.to(torch.bfloat16)).dtype == torch.bfloat16


def test_the_progress_bar_and_the_parameters_are_left_as_the_caller_set_them(pipe):
    pipe.set_progress_bar_config(desc="mine", leave=False)
    SDModel.from_pipeline(pipe)
    assert pipe._progress_bar_config == {"desc": "mine", "leave": False}
    assert all(p.requires_grad for p in pipe.unet.parameters())  # runs freeze what they do not train, for their time


def test_a_registered_name_is_recorded_as_load_sd_records_it(pipe, tiny_sd):
    from lowdim_sd.registered_models import sd_backend

    model = SDModel.from_pipeline(pipe, name="sd1.5")  # an alias of sd15
    assert (model.name, model.source) == ("sd15", sd_backend("sd15").source)  # load_sd("sd1.5")'s own


def test_a_pipeline_built_in_this_process_needs_a_name():
    pipe = build_tiny_pipeline()
    with pytest.raises(LowdimError, match=r"SDModel.from_pipeline: .* pass name="):
        SDModel.from_pipeline(pipe)
    assert SDModel.from_pipeline(pipe, name="my-tiny").base_model_id == "my-tiny"


def test_a_unet_and_text_encoder_in_two_dtypes_are_refused_in_one_line(pipe):
    pipe.unet.to(torch.bfloat16)
    with pytest.raises(LowdimError) as refused:
        SDModel.from_pipeline(pipe)
    message = str(refused.value)
    assert "\n" not in message
    assert "UNet is torch.bfloat16 on cpu" in message and "text encoder is torch.float32 on cpu" in message


def test_a_pipeline_without_weights_is_refused_in_one_line(pipe):
    pipe.unet.to("meta")
    pipe.text_encoder.to("meta")
    with pytest.raises(LowdimError, match=r"^SDModel.from_pipeline: the pipeline is on the meta device"):
        SDModel.from_pipeline(pipe)


def test_what_is_no_sd_pipeline_is_refused_in_one_line(pipe):
    with pytest.raises(LowdimError, match=r"takes a diffusers StableDiffusionPipeline .* got a UNet2DConditionModel"):
        SDModel.from_pipeline(pipe.unet)
