"""A merge of a single file whose configs are a registered model's (``--model-config tinyfaces``) records that model's
name, not its folder: the file carries no folder of the machine that made it, and loads with no ``--model-config``
wherever the registry puts the model. A folder of the user's own, and every record from before, are read as before
(review FD, "merge absolute base paths")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lowdim.registry import get_registry
from lowdim_cli.main import main
from lowdim_sd.ldm_checkpoint import save_single_file
from lowdim_sd.loading import config_source, load_sd
from lowdim_sd.merged_model import RECORD_KEY
from lowdim_sd.model_names import CONFIGS_KEY


@pytest.fixture
def offline(monkeypatch):
    """No hub: a checkpoint's configs can only come from a folder here, as the record names it."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tinyfaces():
    """The registered TinyFaces backend, whose ``source`` a test may point at another copy of its folder."""
    return get_registry().backends["tinyfaces"].value


@pytest.fixture(scope="module")
def checkpoint_and_adapter(tmp_path_factory) -> tuple[Path, Path]:
    """TinyFaces' weights as one checkpoint with A1111's bare metadata (no base model: its configs come from
    --model-config), and an adapter of TinyFaces."""
    import lowdim
    from lowdim_sd.modes import resolve_layers

    folder = tmp_path_factory.mktemp("fiq")
    model = load_sd("tinyfaces", "cpu", "fp32")
    path = save_single_file(model.pipe, folder / "faces.safetensors")
    save_file(load_file(str(path)), str(path), metadata={"format": "pt"})
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    adapter = lowdim.save_adapter(folder / "me.safetensors", view, "default", token="zwx")
    return path, adapter


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as file:
        return dict(file.metadata() or {})


def merge(capsys, checkpoint: Path, configs: str, adapter: Path, out: Path) -> dict:
    """``lowdim merge`` of the checkpoint read with ``--model-config configs``; the merge record it wrote."""
    capsys.readouterr()
    code = main(["merge", "-m", str(checkpoint), "--model-config", configs, "-a", str(adapter), "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    return json.loads(metadata(out)[RECORD_KEY])


def show(capsys, path: Path) -> str:
    """Show's table as one run of characters, without the box's lines and spaces: a row the console's width
    wrapped (a long path) reads as one."""
    capsys.readouterr()
    assert main(["show", str(path)]) == 0
    return squeezed(capsys.readouterr().out)


def squeezed(text: str) -> str:
    return "".join(text.replace("│", "").split())


@pytest.mark.parametrize("given", ["name", "folder"])
def test_a_merge_on_a_registered_model_s_configs_records_its_name_and_no_folder_of_the_plugin(
        checkpoint_and_adapter, tinyfaces, tmp_path, capsys, offline, one_thread, given):
    checkpoint, adapter = checkpoint_and_adapter
    plugin_folder = str(Path(tinyfaces.source).resolve())
    record = merge(capsys, checkpoint, "tinyfaces" if given == "name" else plugin_folder, adapter,
                   tmp_path / "merged.safetensors")
    assert record[CONFIGS_KEY] == "tinyfaces"
    written = metadata(tmp_path / "merged.safetensors")
    assert not [key for key, value in written.items() if plugin_folder in value]


def test_a_merged_file_finds_the_registered_model_s_configs_where_the_registry_now_puts_them(
        checkpoint_and_adapter, tinyfaces, tmp_path, capsys, monkeypatch, offline, one_thread):
    checkpoint, adapter = checkpoint_and_adapter
    first = shutil.copytree(tinyfaces.source, tmp_path / "installed-first")
    monkeypatch.setattr(tinyfaces, "source", str(first))
    merged = tmp_path / "merged.safetensors"
    merge(capsys, checkpoint, "tinyfaces", adapter, merged)
    later = first.rename(tmp_path / "installed-later")  # the plugin reinstalled elsewhere (another venv, machine)
    monkeypatch.setattr(tinyfaces, "source", str(later))
    assert config_source(str(merged), None) == str(later)
    model = load_sd(str(merged), "cpu", "fp32")  # no --model-config
    assert Path(model.pipe.tokenizer.name_or_path).resolve() == later.resolve()
    said = show(capsys, merged)
    assert squeezed(f"base configs tinyfaces (the registered model's, here {later})") in said, said
    assert "--model-config" not in said


def test_an_old_record_of_the_plugin_s_folder_by_its_path_still_loads_and_shows_as_before(
        tinyfaces, tmp_path, capsys, offline, one_thread):
    folder = str(Path(tinyfaces.source).resolve())  # what a merge before this change recorded
    base = str(tmp_path / "gone.safetensors")  # a user's own checkpoint, since deleted
    model = load_sd("tinyfaces", "cpu", "fp32")
    record = {"base_model": base, "adapters": [], "tokens": [], CONFIGS_KEY: folder}
    merged = save_single_file(model.pipe, tmp_path / "old.safetensors", base_model=base,
                              extra={RECORD_KEY: json.dumps(record)})
    assert config_source(str(merged), None) == folder
    assert Path(load_sd(str(merged), "cpu", "fp32").pipe.tokenizer.name_or_path).resolve() == Path(folder)
    said = show(capsys, merged)
    assert squeezed(f"base configs {folder}") + "ad" in said, said  # the path alone, the next row's label after it
    assert "--model-config" not in said


def test_a_record_naming_a_model_not_registered_here_asks_for_model_config_in_one_line(
        tiny_sd, tmp_path, capsys, offline, one_thread):
    from lowdim_sd.tiny import build_tiny_pipeline

    record = {"base_model": str(tmp_path / "gone.safetensors"), "adapters": [], "tokens": [], CONFIGS_KEY: "tinyfacez"}
    merged = save_single_file(build_tiny_pipeline(0), tmp_path / "m.safetensors", base_model=record["base_model"],
                              extra={RECORD_KEY: json.dumps(record)})
    said = show(capsys, merged)
    assert squeezed("base configs tinyfacez (a registered model's, not registered here: draw with --model-config "
                    "FOLDER)") in said, said
    capsys.readouterr()
    assert main(["generate", "-m", str(merged), "-p", "x", "--steps", "1", "-o", str(tmp_path / "g")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err
    assert err.endswith("its merge read its configs from the registered model tinyfacez, which is not registered "
                        "here; pass --model-config, a local diffusers folder of the same model"), err


def test_sd15_s_copy_in_the_hub_cache_is_recorded_as_sd15_and_a_user_s_folder_by_its_path(tmp_path):
    from lowdim_sd.plugin import SD15_HUB_ID
    from lowdim_sd.recorded_paths import recorded_folder

    snapshot = tmp_path / ("models--" + SD15_HUB_ID.replace("/", "--")) / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    assert recorded_folder(snapshot) == "sd15"
    mine = tmp_path / "my-sd"
    mine.mkdir()
    (tmp_path / "link").symlink_to(mine)
    assert recorded_folder(tmp_path / "link") == str(mine.resolve())  # policy 1: absolute, links followed
