"""Adapter and hypernetwork files another lowdim wrote (review AL1, AL3): a newer format version, a missing one, or a
space or hypernetwork option this lowdim does not know is refused in one line that names the file and says what to
do, and `lowdim show` says so instead of suggesting a command that would fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.hyper import HyperConfig, HyperNetwork, load_hypernet, save_hypernet
from lowdim.hyper.storage import read_hypernet
from lowdim.spaces.base import LayerSpec
from lowdim_cli.main import main
from lowdim_sd.file_info import describe

transformers = pytest.importorskip("transformers")

LAYERS = [LayerSpec("q", 16, 8), LayerSpec("o", 12, 12)]
ENCODER = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64)


@pytest.fixture
def adapter(tmp_path) -> Path:
    """A LoRA adapter on a layer named as in an SD model (so export takes it)."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(8, 8))})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.0"], seed=0)
    return lowdim.save_adapter(tmp_path / "me.safetensors", model, base_model="tinyfaces")


@pytest.fixture
def hypernet(tmp_path) -> Path:
    torch.manual_seed(0)
    config = HyperConfig(encoder_config=transformers.ViTConfig(**ENCODER), width=32, attention_heads=4,
                         feedforward=64, iterations=2)
    net = HyperNetwork(config, lowdim.get_space("lidb", a=6, b=5), LAYERS)
    return save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd", "layer_set": "qo"}, adapter_seed=0)


def without(path: Path, key: str) -> Path:
    with safe_open(str(path), framework="pt") as handle:
        metadata = {name: value for name, value in handle.metadata().items() if name != key}
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata=metadata)
    return path


def with_option(path: Path, key: str, **options) -> Path:
    """The file with options added to the JSON config stored under ``key``, as a newer lowdim might write it."""
    with safe_open(str(path), framework="pt") as handle:
        config = json.loads(handle.metadata()[key])
    return rewrite(path, **{key: json.dumps({**config, **options})})


# -- AL1: a hypernetwork's format version ---------------------------------------------------------------------
def test_a_hypernetwork_of_a_newer_format_version_is_refused_naming_the_file_and_saying_to_upgrade(hypernet):
    rewrite(hypernet, format_version="2")
    with pytest.raises(LowdimError) as refused:
        read_hypernet(hypernet)
    assert str(refused.value) == (f"{hypernet}: hypernetwork format version 2; this lowdim reads version 1: "
                                  f"upgrade lowdim")
    with pytest.raises(LowdimError, match="upgrade lowdim"):
        load_hypernet(hypernet)


def test_a_hypernetwork_without_a_format_version_is_refused_as_one_no_lowdim_wrote(hypernet):
    without(hypernet, "format_version")  # every lowdim has written it, since the first hypernetwork file
    with pytest.raises(LowdimError) as refused:
        read_hypernet(hypernet)
    message = str(refused.value)
    assert message.startswith(f"{hypernet}: hypernetwork has no format version") and "None" not in message


def test_a_hypernetwork_of_this_version_still_loads(hypernet):
    assert read_hypernet(hypernet).stored["layer_set"] == "qo"
    assert load_hypernet(hypernet).layers == LAYERS


def test_show_names_a_newer_hypernetworks_version_and_suggests_no_command(hypernet):
    rewrite(hypernet, format_version="2")
    info = describe(hypernet)
    assert dict(info.rows)["problem"] == ("hypernetwork format version 2; this lowdim reads version 1: upgrade "
                                          "lowdim")
    assert info.use == ""


# -- AL3: an adapter's format version and unknown options -----------------------------------------------------
def test_an_adapter_of_a_newer_format_version_says_to_upgrade(adapter):
    rewrite(adapter, format_version="2")
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(adapter)
    assert str(refused.value) == f"{adapter}: adapter format version 2; this lowdim reads version 1: upgrade lowdim"


def test_an_adapter_without_a_format_version_is_called_so_not_none(adapter):
    without(adapter, "format_version")
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(adapter)
    message = str(refused.value)
    assert message.startswith(f"{adapter}: adapter has no format version") and "None" not in message
    assert "upgrade" not in message  # no lowdim ever wrote an adapter without it: upgrading would not help


def test_an_unknown_space_option_names_the_file_and_says_a_newer_lowdim_may_have_written_it(adapter):
    with_option(adapter, "space_config", new_opt=3)
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(adapter)
    message = str(refused.value)
    assert message.startswith(f"{adapter}: unknown option(s) new_opt for space 'lora'")
    assert "newer lowdim" in message and "plugin" in message and "upgrade lowdim" in message


def test_export_of_an_adapter_with_an_unknown_option_says_so_in_one_line(adapter, tmp_path, capsys):
    with_option(adapter, "space_config", new_opt=3)
    out = tmp_path / "out.kohya.safetensors"
    assert main(["export", str(adapter), "--format", "kohya", "-o", str(out)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(adapter) in lines[0] and "newer lowdim" in lines[0], lines
    assert not out.exists()


def test_an_unknown_hypernetwork_option_names_the_file_and_says_to_upgrade(hypernet):
    with_option(hypernet, "hyper_config", future_opt=1)
    with pytest.raises(LowdimError) as refused:
        load_hypernet(hypernet)
    message = str(refused.value)
    assert message.startswith(f"{hypernet}: unknown option(s) future_opt for HyperConfig")
    assert "newer lowdim" in message and message.endswith("upgrade lowdim")


def test_an_unknown_option_of_a_hypernetworks_space_names_the_file_and_says_to_upgrade(hypernet):
    with_option(hypernet, "space_config", new_opt=1)
    with pytest.raises(LowdimError) as refused:
        load_hypernet(hypernet)
    message = str(refused.value)
    assert message.startswith(f"{hypernet}: unknown option(s) new_opt for space 'lidb'")
    assert "newer lowdim" in message and message.endswith("upgrade lowdim (or that plugin)")  # a plugin's space too


@pytest.mark.parametrize("version", ["2", None])
def test_show_gives_a_version_problem_row_and_no_use_line(adapter, version, capsys):
    rewrite(adapter, format_version=version) if version else without(adapter, "format_version")
    info = describe(adapter)
    problem = dict(info.rows)["problem"]
    assert ("upgrade lowdim" in problem) == (version == "2") and "None" not in problem
    assert info.use == ""
    assert main(["show", str(adapter)]) == 0
    assert "use it:" not in capsys.readouterr().out
