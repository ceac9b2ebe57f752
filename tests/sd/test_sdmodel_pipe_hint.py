"""``SDModel.pipe`` is typed as the diffusers pipeline it is (review AR12), so a type checker completes the calls
docs/sd.md tells users to make on it (``enable_model_cpu_offload()``...) instead of reading ``Any``."""

from __future__ import annotations

import typing

from lowdim_sd.loading import SDModel


def test_the_pipe_of_a_loaded_model_is_typed_as_a_stable_diffusion_pipeline():
    # The real class, from its own module: diffusers' top-level name is typed as a dummy placeholder.
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

    hints = typing.get_type_hints(SDModel, localns={"StableDiffusionPipeline": StableDiffusionPipeline})
    assert hints["pipe"] is StableDiffusionPipeline
