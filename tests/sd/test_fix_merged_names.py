"""``lowdim merge --format diffusers`` of a registered model records that model by its name in the configs diffusers
writes (``_name_or_path`` of model_index.json and of each part's config), not by the folder pip installed it in
(site-packages, a venv in the user's home), as lowdim_merge.json beside them does (docs/sd.md, "Paths in files").
A folder of the user's own keeps the path diffusers records. The folder still loads in plain diffusers (review FG 4).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lowdim.registry import get_registry
from lowdim_cli.main import main
from lowdim_sd.loading import load_sd

PARTS_WITH_A_SOURCE = ("model_index.json", "unet/config.json", "vae/config.json")


@pytest.fixture(scope="module")
def tinyfaces():
    """The registered TinyFaces backend, whose ``source`` a test points at a copy standing for an installed one."""
    return get_registry().backends["tinyfaces"].value


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A LiDB adapter of TinyFaces, as personalize would write it (its weights as initialized)."""
    import lowdim
    from lowdim_sd.modes import resolve_layers

    model = load_sd("tinyfaces", "cpu", "fp32")
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    return lowdim.save_adapter(tmp_path_factory.mktemp("fix") / "me.safetensors", view, "default", token="zwx")


def merge_folder(capsys, model: str, adapter: Path, out: Path) -> Path:
    capsys.readouterr()
    code = main(["merge", "-m", model, "-a", str(adapter), "-o", str(out), "--format", "diffusers"])
    assert code == 0, capsys.readouterr().err
    return out


def written_json(folder: Path) -> dict[str, str]:
    """Every JSON file the merge wrote, by its path inside ``folder``, as text."""
    return {str(path.relative_to(folder)): path.read_text() for path in folder.rglob("*.json")}


def recorded_sources(folder: Path) -> dict[str, object]:
    return {part: json.loads((folder / part).read_text()).get("_name_or_path") for part in PARTS_WITH_A_SOURCE}


def test_a_merged_folder_of_an_installed_model_records_its_name_not_where_pip_put_it(
        adapter, tinyfaces, tmp_path, capsys, monkeypatch, one_thread):
    venv = tmp_path / "home" / "alice" / ".venvs" / "lowdim"
    installed = shutil.copytree(tinyfaces.source, venv / "site-packages" / "lowdim_tinyfaces" / "model")
    monkeypatch.setattr(tinyfaces, "source", str(installed))
    merged = merge_folder(capsys, "tinyfaces", adapter, tmp_path / "merged")

    files = written_json(merged)
    assert set(PARTS_WITH_A_SOURCE) <= set(files)
    parts_without_a_source = {"text_encoder/config.json", "tokenizer/tokenizer_config.json",
                              "scheduler/scheduler_config.json"}
    assert parts_without_a_source <= set(files)
    holding_the_path = sorted(part for part, text in files.items() if str(venv) in text or "site-packages" in text)
    assert holding_the_path == []
    assert recorded_sources(merged) == dict.fromkeys(PARTS_WITH_A_SOURCE, "tinyfaces")
    assert json.loads(files["lowdim_merge.json"])["base_model"] == "tinyfaces"

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(merged))
    assert pipe.unet.config.sample_size == json.loads(files["unet/config.json"])["sample_size"]


def test_a_merged_folder_of_the_user_s_own_model_keeps_the_path_diffusers_records(
        adapter, tinyfaces, tmp_path, capsys, one_thread):
    own = shutil.copytree(tinyfaces.source, tmp_path / "models" / "my-faces")
    merged = merge_folder(capsys, str(own), adapter, tmp_path / "merged")

    assert recorded_sources(merged) == {"model_index.json": str(own), "unet/config.json": str(own / "unet"),
                                        "vae/config.json": str(own / "vae")}


def test_a_part_read_from_sd15_s_snapshot_in_the_cache_is_recorded_by_its_hub_id(tmp_path):
    from lowdim_sd.model_names import registered_source
    from lowdim_sd.text_encoder_files import _registered_name

    hub_id = registered_source("sd15")
    snapshot = tmp_path / "hub" / ("models--" + hub_id.replace("/", "--")) / "snapshots" / "0123abc"
    assert _registered_name(str(snapshot / "unet")) == hub_id == _registered_name(str(snapshot))
    assert _registered_name(str(tmp_path / "hub" / "models--someone--else" / "snapshots" / "0123abc" / "unet")) is None
