"""A machine without one of lowdim's first-party plugins (lowdim-vera, lowdim-tinyfaces) is told which package to
install, whichever way the missing piece is reached: a stack whose component is a plugin's space, `--space vera`
typed on the command line, a TinyFaces adapter shown, and a plugin whose module is gone (review AW)."""

from __future__ import annotations

import json

import pytest
from torch import nn

import lowdim
from lowdim import plugins
from lowdim.space_packages import recorded_package
from lowdim.spaces.stack import StackSpace

pytest.importorskip("lowdim_vera")  # the first-party plugin, installed through its entry point


def without_plugins() -> lowdim.Registry:
    """What a machine where only lowdim is installed has: its own spaces, no entry point."""
    return lowdim.Registry.from_plugins(load_entry_points=False)


def vera_stack_adapter(tmp_path):
    """What `personalize --space vera` writes: a frozen vera component, a trainable LoRA on top."""
    model = nn.Sequential(nn.Linear(6, 5))
    stack = StackSpace.of([(lowdim.get_space("vera", rank=2), 0)], lowdim.get_space("lora", rank=1))
    lowdim.inject(model, stack, ["0"])
    return lowdim.save_adapter(tmp_path / "stack.safetensors", model)


def test_a_stack_with_a_plugin_component_records_its_package_and_names_it_where_missing(tmp_path):
    from lowdim_sd.file_info import describe

    path = vera_stack_adapter(tmp_path)
    assert json.loads(lowdim.read_adapter(path).metadata["space_packages"]) == {"vera": "lowdim-vera"}
    with lowdim.use_registry(without_plugins()):
        with pytest.raises(lowdim.errors.LowdimError, match=r"its space 'vera' comes with the plugin lowdim-vera, "
                                                            r"which is not installed \(pip install lowdim-vera;"):
            lowdim.read_adapter(path)
        info = describe(path)
    assert "space 'vera' (package lowdim-vera)" in dict(info.rows)["needs"]
    assert info.use == ""  # no command that would refuse it


def test_a_stack_of_lowdims_own_spaces_records_no_packages_and_loads_as_before(tmp_path):
    model = nn.Sequential(nn.Linear(6, 5))
    lowdim.inject(model, lowdim.get_space("stack"), ["0"])
    path = lowdim.save_adapter(tmp_path / "own.safetensors", model)
    with lowdim.use_registry(without_plugins()):
        metadata = lowdim.read_adapter(path).metadata
    assert "space_packages" not in metadata and "space_package" not in metadata


def test_space_vera_without_the_plugin_names_the_package_that_brings_it():
    with pytest.raises(lowdim.errors.ConfigError, match=r"unknown space 'vera': it comes with the plugin "
                                                        r"lowdim-vera, which is not installed \(pip install "
                                                        r"lowdim-vera; from a checkout, pip install -e "
                                                        r"plugins/lowdim-vera\)"):
        without_plugins().make_space("vera")
    with pytest.raises(lowdim.errors.ConfigError, match=r"unknown space 'nosuch'; known: lidb, lora, stack, ti$"):
        without_plugins().make_space("nosuch")


def test_space_vera_with_plugins_switched_off_says_so_rather_than_to_install_it(monkeypatch):
    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    with pytest.raises(lowdim.errors.ConfigError, match="LOWDIM_NO_PLUGINS is set"):
        without_plugins().make_space("vera")


def test_show_of_a_tinyfaces_adapter_without_its_plugin_names_the_package_instead_of_a_failing_command(tmp_path):
    from lowdim_sd.file_info import describe

    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(6, 5))})  # an SD-named layer: show offers generate
    lowdim.inject(model, lowdim.get_space("lora", rank=1), ["unet.0"])
    path = lowdim.save_adapter(tmp_path / "tf.safetensors", model, base_model="tinyfaces")
    assert describe(path).use.startswith("lowdim generate -m tinyfaces")  # the plugin is installed here
    with lowdim.use_registry(without_plugins()):
        info = describe(path)
    assert "model 'tinyfaces' (package lowdim-tinyfaces)" in dict(info.rows)["needs"]
    assert info.use == ""


def test_version_marks_a_plugin_that_fails_to_load(tmp_path, monkeypatch, capsys, app_as_it_was):
    from lowdim_cli.main import main

    dist = tmp_path / "lowdim_broken-0.3.0.dist-info"  # an installed package whose module is gone
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lowdim-broken\nVersion: 0.3.0\n")
    (dist / "entry_points.txt").write_text("[lowdim]\nbroken = lowdim_broken_gone\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_installed", None)
    monkeypatch.setattr(plugins, "_failed_to_load", {})
    code = main(["--version"])
    out, err = capsys.readouterr()
    assert code == 0 and ("Warning: plugin package lowdim-broken: its entry point names module 'lowdim_broken_gone', "
                          "which is not installed (reinstall or uninstall lowdim-broken)") in " ".join(err.split())
    assert ("lowdim-broken 0.3.0 (failed to load: ModuleNotFoundError: No module named 'lowdim_broken_gone')"
            in out.splitlines()[1])
    assert "lowdim-vera" in out.splitlines()[1] and "lowdim-vera 0.1.0 (failed" not in out


def test_train_runs_vera_at_its_own_rate_not_loras():
    from lowdim_sd.workflows import TrainJob, train_config

    # 100 steps on TinyFaces: 1e-4 (LoRA's) moves VeRA's ΔW 7x less than LoRA's; 1e-2 as far as LiDB's 2e-3 does
    assert train_config(TrainJob(model="tinyfaces", space="vera")).learning_rate == 1e-2
    assert train_config(TrainJob(model="tinyfaces", space="vera", learning_rate=3e-3)).learning_rate == 3e-3


def test_a_plain_plugin_space_records_its_package_only_once(tmp_path):
    # space_packages is for a stack with a plugin's component; a plain vera adapter's bytes are those of any lowdim.
    model = nn.Sequential(nn.Linear(6, 5))
    lowdim.inject(model, lowdim.get_space("vera"), ["0"])
    metadata = lowdim.read_adapter(lowdim.save_adapter(tmp_path / "v.safetensors", model)).metadata
    assert metadata["space_package"] == "lowdim-vera" and "space_packages" not in metadata


def test_an_older_stacks_missing_component_is_not_given_the_stacks_own_package():
    # A file from before space_packages: a plugin's stack whose frozen component is vera. The hint for a missing
    # vera names lowdim-vera (what brings vera), not the stack's package; an unknown plugin's component, none.
    metadata = {"space": "mystack", "space_package": "lowdim-mystack",
                "space_config": json.dumps({"components": [{"space": "vera", "config": {}}]})}
    assert recorded_package(metadata, "mystack") == "lowdim-mystack"
    assert recorded_package(metadata, "vera") == "lowdim-vera"
    metadata["space_config"] = json.dumps({"components": [{"space": "other", "config": {}}]})
    assert recorded_package(metadata, "other") is None
