"""Session 58's mutation audit: behaviours of the session's new code (foreign files, plugins, export's -o link,
merge records, eval's identifiers and report) that no test held yet; the mutant each kills is in the session's
report."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_plugins import plugin_module
from torch import nn

import lowdim
from lowdim import plugins
from lowdim.foreign_files import not_ours
from lowdim.plugin_calling import plugin_label
from lowdim_cli.main import main


# -- an export handed back names the adapter lowdim draws with ------------------------------------------------------
def test_an_exported_embedding_handed_back_names_the_adapter_it_was_exported_from():
    said = not_ours(Path("me-a1111.safetensors"), "adapter",
                    {"embedding_format": "a1111", "token": "zwx", "source_adapter": "runs/me.safetensors"},
                    ["emb_params"])
    assert said.endswith("lowdim draws with the adapter file it was exported from, 'runs/me.safetensors'"), said


def test_another_tools_embedding_names_no_adapter():
    said = not_ours(Path("emb.safetensors"), "adapter", {}, ["emb_params"])
    assert said.endswith("lowdim draws with the adapter file it was exported from"), said


# -- a bug's traceback names the plugin whose code raised it ------------------------------------------------------
@pytest.fixture
def two_plugins(tmp_path, monkeypatch):
    """Two plugin packages on disk: one whose helper calls what it is given, one whose function has a bug."""
    (tmp_path / "s58_caller").mkdir()
    (tmp_path / "s58_caller" / "__init__.py").write_text("def call(function):\n    return function()\n")
    (tmp_path / "s58_buggy").mkdir()
    (tmp_path / "s58_buggy" / "__init__.py").write_text("def divide():\n    return 1 // 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = [importlib.import_module(name) for name in ("s58_caller", "s58_buggy")]
    yield modules
    for name in ("s58_caller", "s58_buggy"):
        sys.modules.pop(name, None)


def test_the_plugin_named_is_the_one_whose_code_raised_not_the_one_that_called_it(two_plugins):
    caller, buggy = two_plugins
    manager = plugins.build_plugin_manager(["lowdim.spaces.builtin", caller, buggy])
    try:
        caller.call(buggy.divide)
    except ZeroDivisionError as error:
        found = plugins.plugin_that_raised(manager, error)
    assert found == ("s58_buggy", "s58_buggy/__init__.py:2"), found


def test_a_bug_in_lowdims_own_code_is_blamed_on_no_plugin_not_on_lowdims_builtin_one(two_plugins):
    manager = plugins.build_plugin_manager(["lowdim.spaces.builtin", *two_plugins])
    try:
        lowdim.get_space("lora", rank="not a number")
    except Exception as error:  # noqa: BLE001  (whatever lowdim's own code raises)
        assert plugins.plugin_that_raised(manager, error) is None
    else:
        pytest.fail("a rank that is no number was accepted")


# -- the warnings a plugin's hook gives, told as the plugin's ------------------------------------------------------
def _hook_warnings(hook) -> list[tuple[type, str]]:
    module = plugin_module("s58-warner", register_spaces=hook)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    return [(w.category, str(w.message)) for w in caught]


def test_a_plugin_warning_already_naming_the_plugin_is_not_labelled_twice():
    label = plugin_label("s58-warner")
    said = _hook_warnings(lambda register: warnings.warn(f"{label}: a note", plugins.PluginWarning, stacklevel=2))
    assert said == [(plugins.PluginWarning, f"{label}: a note")], said


def test_another_kind_of_warning_a_hook_gives_passes_as_it_was():
    said = _hook_warnings(lambda register: warnings.warn("torch is old", DeprecationWarning, stacklevel=2))
    assert said == [(DeprecationWarning, "torch is old")], said


def _adapter(path: Path) -> Path:
    model = nn.ModuleDict({"unet": nn.ModuleDict({"time_embedding": nn.ModuleDict({"linear_1": nn.Linear(4, 4)})})})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.time_embedding.linear_1"])
    return lowdim.save_adapter(path, model, token="zwx")


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return " ".join(lines[0].split())


# -- export: an -o link is checked as the file it leads to ----------------------------------------------------------
def test_an_out_link_into_a_folder_that_cannot_be_made_is_one_line_naming_what_is_in_the_way(tmp_path, capsys,
                                                                                            one_thread):
    source = _adapter(tmp_path / "me.safetensors")
    (tmp_path / "store").write_text("a file where the store folder should be")
    link = tmp_path / "me-kohya.safetensors"
    link.symlink_to(Path("store") / "real.safetensors")
    assert main(["export", str(source), "-o", str(link)]) == 1
    line = _one_line(capsys)
    # checked before the adapter is read (no export warning first), naming the flag and the store in the way
    assert "-o" in line and str(tmp_path / "store") in line, line
    assert link.is_symlink() and (tmp_path / "store").read_text().startswith("a file")


# -- a merged single file whose record holds an empty configs folder -----------------------------------------------
def test_a_merge_record_with_an_empty_configs_folder_is_no_moved_folder(tmp_path):
    """A record edited by hand (or cut short) to "model_config": "" names no folder: the load failure is the usual
    one, not "the configs folder its merge recorded, , is no model folder"."""
    from lowdim_sd.ldm_checkpoint import METADATA
    from lowdim_sd.merged_model import RECORD_KEY
    from lowdim_sd.model_names import moved_configs, recorded_configs
    from lowdim_sd.pipeline_parts import single_file_error

    merged = tmp_path / "merged.safetensors"
    save_file({"w": torch.zeros(1)}, str(merged),
              metadata={**METADATA, RECORD_KEY: json.dumps({"base_model": "base.safetensors", "model_config": ""})})
    assert moved_configs(merged) is None and recorded_configs(merged) is None
    said = str(single_file_error(merged, "no config", None))
    assert "merge recorded" not in said and "could not load it as an SD1.x checkpoint" in said, said


# -- eval: the identifiers CLIP-T removes, the references it records ----------------------------------------------
@pytest.fixture
def generated(tmp_path) -> Path:
    """A folder as `lowdim generate` leaves it with two adapters: two pictures, prompts.json with its settings."""
    from PIL import Image

    folder = tmp_path / "gen"
    folder.mkdir()
    for index in range(2):
        Image.effect_noise((32, 32), 40 + index).convert("RGB").save(folder / f"{index:03d}.png")
    entries = [{"image": f"{index:03d}.png", "prompt": "sks and zqx, at night", "seed": index} for index in range(2)]
    adapters = [{"file": "/a.safetensors", "scale": 1.0, "token": "sks"},
                {"file": "/b.safetensors", "scale": 1.0, "token": "zqx"}]
    settings = {"model": "tinyfaces", "adapters": adapters, "token": "sks", "steps": 4}
    (folder / "prompts.json").write_text(json.dumps({"images": entries, "settings": settings}))
    return folder


@pytest.fixture
def photos(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "ids"
    folder.mkdir()
    for index in range(2):
        Image.effect_noise((32, 32), 20 + index).convert("RGB").save(folder / f"id-{index}.png")
    return folder


def test_a_token_given_replaces_every_word_generate_recorded(generated, photos):
    """--token names the identifier itself: generate's record (its token and each adapter's) is not read then."""
    from lowdim_sd.eval.folder import load_eval_set

    data = load_eval_set(generated, [photos], token="mine")
    assert (data.token, data.other_tokens) == ("mine", ())
    assert data.samples[0].clean_prompt() == "sks and zqx, at night"


SETTINGS = {"models": {"clip-t": "openai/clip-vit-base-patch32", "tinyfaces-identity": None}, "token": "sks",
            "crop": None, "references": ["/data/ids/id-0.png"]}


def test_the_scored_with_line_names_only_the_metrics_that_say_their_model():
    from lowdim_sd.eval.report import settings_line

    line = settings_line(SETTINGS)
    assert line.startswith("Scored with: models clip-t openai/clip-vit-base-patch32; token sks;"), line
    assert "None" not in line and "tinyfaces-identity" not in line, line


def test_the_scored_with_line_is_in_eval_md_but_not_in_the_tables_the_evaluate_tab_shows():
    from lowdim_sd.eval.report import EvalReport

    report = EvalReport(images=["000.png"], prompts=["a sks face"], results=[], settings=SETTINGS,
                        references=[("/data/ids/id-0.png",)])
    assert "Scored with:" in report.to_markdown(settings=True)
    assert "Scored with:" not in report.to_markdown()
