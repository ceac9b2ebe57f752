"""A registered model's own folder (``lowdim show tinyfaces`` names it) is that model, with its hypernetwork,
describer and crop, whether given as -m FOLDER or as a pipeline loaded from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowdim.registry import get_registry
from lowdim_sd.loading import SDModel, name_and_source
from lowdim_sd.registered_models import sd_backend


@pytest.fixture(scope="module")
def tinyfaces_folder() -> Path:
    entry = get_registry().backends.get("tinyfaces")
    if entry is None:
        pytest.skip("lowdim-tinyfaces is not installed")
    return Path(entry.value.source)


def test_the_folder_is_the_registered_model(tinyfaces_folder):
    assert sd_backend(str(tinyfaces_folder)).name == "tinyfaces"
    assert name_and_source(str(tinyfaces_folder)) == ("tinyfaces", str(tinyfaces_folder))


def test_a_pipeline_loaded_from_it_is_named_for_it(tinyfaces_folder, one_thread):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tinyfaces_folder))  # fp32, the default
    assert SDModel.from_pipeline(pipe).name == "tinyfaces"


def test_another_folder_stays_a_folder(tiny_sd):
    assert sd_backend(str(tiny_sd)) is None
    assert name_and_source(str(tiny_sd)) == (str(tiny_sd), str(tiny_sd))


def test_a_relative_path_to_the_folder_is_the_model(tinyfaces_folder, monkeypatch):
    """``cd .../lowdim_tinyfaces && lowdim personalize -m model``: the folder as typed, not as the registry spells
    it, is still tinyfaces (its hypernetwork, describer and crop), not an unknown model trained from zero."""
    monkeypatch.chdir(tinyfaces_folder.parent)
    name, parent = tinyfaces_folder.name, tinyfaces_folder.parent.name
    for given in (name, f"./{name}/", f"../{parent}/{name}", f"{name}/../{name}"):
        assert sd_backend(given) is not None and sd_backend(given).name == "tinyfaces", given


def test_personalize_on_the_folder_runs_as_on_the_name(tinyfaces_folder, tmp_path, one_thread):
    """The hypernetwork, the describer and the crop default of the registered model, and its name recorded."""
    from lowdim_sd.personalize import PersonalizeJob, personalize

    face = Path(__file__).resolve().parents[2] / "examples" / "face.png"
    result = personalize(PersonalizeJob(model=str(tinyfaces_folder), image=face, out=tmp_path / "me", steps=1,
                                        preview=False), progress=False)
    assert {"describe", "hypernetwork"} <= set(result.stages)
    import lowdim

    assert lowdim.read_adapter(result.adapter).metadata["base_model"] == "tinyfaces"


def test_inspect_on_the_folder_counts_the_models_own_layers(tiny_sd, capsys):
    """A backend with its own default layer set: inspect on its folder counts that set, as train trains it."""
    import types

    import lowdim
    from lowdim.hookspecs import hookimpl
    from lowdim_cli.main import main
    from lowdim_sd.architecture import LAYER_SETS
    from lowdim_sd.plugin import SDBackend

    class CrossOnly(SDBackend):
        layer_sets = {"cross": LAYER_SETS["unet-cross"], "unet+text": LAYER_SETS["unet+text"]}
        default_layer_set = "cross"

    plugin = types.ModuleType("cross_only")
    plugin.register_backends = hookimpl(lambda register: [register(CrossOnly("crossonly", str(tiny_sd)))])
    modules = ["lowdim.spaces.builtin", "lowdim.hyper.builtin", "lowdim_sd.plugin", plugin]
    with lowdim.use_registry(lowdim.Registry.from_plugins(modules)):
        assert main(["inspect", "-m", "crossonly", "-s", "lidb", "--no-files"]) == 0
        by_name = capsys.readouterr().out
        assert main(["inspect", "-m", str(tiny_sd), "-s", "lidb", "--no-files"]) == 0
        by_folder = capsys.readouterr().out
    named = by_name.replace(str(tiny_sd), "crossonly")
    assert "cross" in by_name and by_folder.replace(str(tiny_sd), "crossonly") == named


def test_a_folder_two_registered_models_share_is_neither_of_them(tmp_path):
    """Two models on one folder: no guess at whose hypernetwork, describer and crop -m FOLDER means."""
    import types

    import lowdim
    from lowdim.hookspecs import hookimpl
    from lowdim_sd.plugin import SDBackend
    from lowdim_sd.registered_models import registered_entry

    plugin = types.ModuleType("two_on_one_folder")
    plugin.register_backends = hookimpl(lambda register: [register(SDBackend("first", str(tmp_path))),
                                                          register(SDBackend("second", str(tmp_path)))])
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin", "lowdim_sd.plugin", plugin])):
        assert registered_entry("first").value.name == "first"
        assert registered_entry(str(tmp_path)) is None and sd_backend(str(tmp_path)) is None


def _cross_only_registry(source: str):
    """A registry holding ``crossonly``: the tiny pipeline at ``source``, with its own default layer set (cross
    attention only), so that `lowdim inspect` shows whether a folder was taken for that model."""
    import types

    import lowdim
    from lowdim.hookspecs import hookimpl
    from lowdim_sd.architecture import LAYER_SETS
    from lowdim_sd.plugin import SDBackend

    class CrossOnly(SDBackend):
        layer_sets = {"cross": LAYER_SETS["unet-cross"], "unet+text": LAYER_SETS["unet+text"]}
        default_layer_set = "cross"

    plugin = types.ModuleType("cross_only")
    plugin.register_backends = hookimpl(lambda register: [register(CrossOnly("crossonly", source))])
    modules = ["lowdim.spaces.builtin", "lowdim.hyper.builtin", "lowdim_sd.plugin", plugin]
    return lowdim.Registry.from_plugins(modules)


def _inspected(capsys, model: str) -> str:
    from lowdim_cli.main import main

    assert main(["inspect", "-m", model, "-s", "lidb", "--no-files"]) == 0
    return " ".join(capsys.readouterr().out.split())


def _after_the_model(inspected: str) -> str:
    """The report past its first line's model (``lidb on MODEL, layer set ...``): what the model's backend decides."""
    return inspected.split(", ", 1)[1]


def test_the_folder_given_with_a_tilde_is_the_registered_model(tiny_sd, tmp_path, monkeypatch, capsys):
    """``-m ~/models/tinyfaces`` (quoted, so the shell left the ~) is tinyfaces, not an unknown model trained from
    zero without its hypernetwork, describer and crop (review CW2 R01)."""
    import lowdim

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "tiny").symlink_to(tiny_sd, target_is_directory=True)
    with lowdim.use_registry(_cross_only_registry(str(tiny_sd))):
        by_name = _inspected(capsys, "crossonly")
        by_tilde = _inspected(capsys, "~/tiny")
        assert sd_backend("~/tiny").name == "crossonly"
    assert "layer set 'unet-cross'" in by_name and _after_the_model(by_tilde) == _after_the_model(by_name)


def test_a_source_registered_with_dotdot_or_a_link_is_its_folder(tiny_sd, tmp_path, capsys):
    """A plugin may register its source as ``.../sub/../model`` or through a link: the folder it names is still
    that model (review CW2 R02)."""
    import lowdim

    (tmp_path / "sub").mkdir()
    (tmp_path / "tiny").symlink_to(tiny_sd, target_is_directory=True)
    with lowdim.use_registry(_cross_only_registry(str(tmp_path / "sub" / ".." / "tiny"))):
        by_name = _inspected(capsys, "crossonly")
        by_folder = _inspected(capsys, str(tiny_sd))
        assert sd_backend(str(tiny_sd)).name == "crossonly"
    assert "layer set 'unet-cross'" in by_name and _after_the_model(by_folder) == _after_the_model(by_name)
