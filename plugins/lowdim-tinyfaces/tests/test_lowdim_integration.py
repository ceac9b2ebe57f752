"""The bundled TinyFaces model through lowdim's own SD code path: alias, loading, personalize."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lowdim_tinyfaces.model_files import model_path

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.personalize import PersonalizeJob, personalize

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "face.png"


def test_the_plugin_registers_model_and_metrics():
    registry = lowdim.get_registry()
    assert registry.backends["tinyfaces"].plugin == "tinyfaces"
    assert registry.backends["tinyfaces"].value.source == str(model_path())
    assert {"tinyfaces-identity", "tinyfaces-style"} <= set(registry.metrics)


def test_bundled_model_loads_like_sd15_and_generates_32px_images():
    model = load_sd("tinyfaces", device="cpu")
    assert model.resolution == 32 and model.source == str(model_path())
    generator = torch.Generator().manual_seed(0)
    images = model.pipe("a pencil sketch of a face", num_inference_steps=2, generator=generator,
                        output_type="np").images
    assert images.shape == (1, 32, 32, 3)


@pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")  # tested in test_inspect_export
def test_smoke_personalize_on_the_bundled_model(tmp_path):
    job = PersonalizeJob(model="tinyfaces", image=EXAMPLE, out=tmp_path, steps=3, preview=True,
                         preview_steps=2, export=["diffusers"])
    result = personalize(job, progress=False)
    adapter = lowdim.read_adapter(result.adapter)
    assert adapter.metadata["base_model"] == "tinyfaces"  # the name, not a path that exists only here
    assert result.preview.is_file() and result.exports[0].is_file()


@pytest.mark.parametrize("style", ["photo", "sketch"])
def test_bundled_model_follows_a_style_prompt(style):
    """Cheap guard of the quality gate: a few samples of a style are classified as that style."""
    from lowdim_tinyfaces.metrics import load_style_classifier
    from lowdim_tinyfaces.quality import generate
    from lowdim_tinyfaces.styles import STYLES, prompt_for

    model = load_sd("tinyfaces", device="cpu")
    images = generate(model.pipe, prompt_for(style), count=6, steps=10, guidance=4.0, seed=50)
    predicted = load_style_classifier().predict(images)
    assert (predicted == STYLES.index(style)).float().mean() >= 0.5
