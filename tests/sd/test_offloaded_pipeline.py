"""A pipeline under accelerate's offload (review AD5): sequential offload keeps the weights off the layers (they
sit on the meta device while a hook holds them), so ``from_pipeline`` refuses it, naming the offload and what
works instead, never "no weights: load its weights first"; model offload moves whole parts, and lowdim's adapters
draw under it as without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_sd.generate import attach_adapters
from lowdim_sd.loading import SDModel


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """One torch thread, as the other SD tests: tiny models run no faster on more."""


@pytest.fixture
def pipe(tiny_sd):
    from diffusers import StableDiffusionPipeline

    loaded = StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None, requires_safety_checker=False)
    loaded.set_progress_bar_config(disable=True)
    return loaded


@pytest.fixture(scope="module")
def adapter(tiny_sd, tmp_path_factory):
    """A LiDB adapter of the tiny model with random values: it draws other pixels than the base."""
    import lowdim
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    view = lowdim.Adapters(load_sd(str(tiny_sd), device="cpu", dtype="fp32").modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in view.parameters("default"):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return lowdim.save_adapter(tmp_path_factory.mktemp("adapter") / "me.safetensors", view, "default", token="zwx")


def draw(pipe) -> np.ndarray:
    return pipe("a photo of zwx", num_inference_steps=2, height=16, width=16, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def test_sequential_offload_is_refused_naming_it_and_what_works(pipe):
    pipe.enable_sequential_cpu_offload(device="cpu")
    with pytest.raises(LowdimError) as refused:
        SDModel.from_pipeline(pipe)
    message = str(refused.value)
    assert message.startswith("SDModel.from_pipeline: ") and "\n" not in message
    assert "enable_sequential_cpu_offload" in message and "enable_model_cpu_offload()" in message
    assert "pipe.remove_all_hooks()" in message
    assert "load its weights first" not in message


def test_a_text_encoder_offloaded_alone_is_named_as_offloaded_not_as_lacking_weights(pipe):
    import accelerate

    accelerate.cpu_offload(pipe.text_encoder, execution_device=torch.device("cpu"))  # by hand, the UNet left whole
    with pytest.raises(LowdimError) as refused:
        SDModel.from_pipeline(pipe)
    message = str(refused.value)
    assert "accelerate's offload holds the pipeline's weights" in message and "pipe.remove_all_hooks()" in message
    assert "load its weights first" not in message


def test_the_way_back_the_refusal_names_works(pipe, tiny_sd, adapter):
    expected = drawn_without_offload(tiny_sd, adapter)
    pipe.enable_sequential_cpu_offload(device="cpu")
    pipe.remove_all_hooks()  # the weights go back onto the layers
    attach_adapters(SDModel.from_pipeline(pipe), [adapter])
    assert np.abs(draw(pipe) - expected).max() == 0


def test_a_pipeline_without_weights_and_without_offload_is_still_told_to_load_them(pipe):
    pipe.unet.to("meta")
    pipe.text_encoder.to("meta")
    with pytest.raises(LowdimError, match=r"^SDModel.from_pipeline: the pipeline is on the meta device"):
        SDModel.from_pipeline(pipe)


def test_model_offload_draws_the_adapter_as_without_it(pipe, tiny_sd, adapter):
    expected = drawn_without_offload(tiny_sd, adapter)
    assert np.abs(expected - draw(pipe)).max() > 1e-3  # the adapter changes the picture
    pipe.enable_model_cpu_offload(device="cpu")
    attach_adapters(SDModel.from_pipeline(pipe), [adapter])
    assert np.abs(draw(pipe) - expected).max() == 0


def drawn_without_offload(tiny_sd, adapter) -> np.ndarray:
    from diffusers import StableDiffusionPipeline

    reference = StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None)
    reference.set_progress_bar_config(disable=True)
    attach_adapters(SDModel.from_pipeline(reference), [adapter])
    return draw(reference)


def test_generate_after_sequential_offload_names_it_not_missing_weights(pipe):
    """The model wrapped first, offloaded after (review AM1): generate's own check names the offload too."""
    from lowdim_sd.generate import GenerateConfig, generate

    model = SDModel.from_pipeline(pipe, name="tiny")
    pipe.enable_sequential_cpu_offload(device="cpu")
    with pytest.raises(LowdimError) as refused:
        generate(model, GenerateConfig(prompts=["a face"], steps=1, resolution=16))
    message = str(refused.value)
    assert "enable_sequential_cpu_offload" in message and "pipe.remove_all_hooks()" in message
    assert "load the model's weights first" not in message and "\n" not in message
