"""Each load checks that every part's config fits its weights by building the part on the meta device; the shapes
are kept per process by what the config says, so loading one model again (bench quality's tasks, the ui's
requests) builds nothing, while an edited config is built anew and still refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lowdim_sd import weights_folder
from lowdim_sd.pipeline_parts import check_model_folder
from lowdim_sd.weights_folder import ModelLoadError


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The part folders built on the meta device from now on, with nothing kept from before."""
    built: list[str] = []
    real = weights_folder._built_shapes
    monkeypatch.setattr(weights_folder, "_DESCRIBED", {})
    monkeypatch.setattr(weights_folder, "_built_shapes", lambda part, cls: built.append(part.name) or real(part, cls))
    return built


def test_a_second_check_of_the_model_or_of_a_copy_builds_no_part_again(tiny_sd, tmp_path, builds):
    check_model_folder(tiny_sd)
    assert sorted(builds) == ["text_encoder", "unet", "vae"]
    check_model_folder(tiny_sd)
    check_model_folder(Path(shutil.copytree(tiny_sd, tmp_path / "copy")))
    assert len(builds) == 3


def test_a_config_edited_after_a_check_is_built_again_and_refused(tiny_sd, tmp_path, builds):
    copied = Path(shutil.copytree(tiny_sd, tmp_path / "copy"))
    check_model_folder(copied)
    config = copied / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "cross_attention_dim": 64}))
    with pytest.raises(ModelLoadError, match="does not fit its weights"):
        check_model_folder(copied)
    assert builds.count("unet") == 2


def test_the_kept_shapes_are_the_callers_to_change(tiny_sd, builds):
    unet_class = dict(weights_folder.components(tiny_sd))[tiny_sd / "unet"]
    first = weights_folder.described_shapes(tiny_sd / "unet", unet_class)
    whole = dict(first)
    first.clear()
    assert weights_folder.described_shapes(tiny_sd / "unet", unet_class) == whole
    assert builds == ["unet"]


def test_a_config_naming_other_configuration_files_is_built_every_time(tiny_sd, tmp_path, builds):
    # transformers reads the file configuration_files names instead: an edit there alone must not find kept shapes.
    copied = Path(shutil.copytree(tiny_sd, tmp_path / "copy"))
    config = copied / "text_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "configuration_files": ["config.json"]}))
    check_model_folder(copied)
    check_model_folder(copied)
    assert builds.count("text_encoder") == 2 and builds.count("unet") == 1
