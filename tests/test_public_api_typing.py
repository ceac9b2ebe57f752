"""What an editor or type checker sees of lowdim's public API, and the small API promises that go with it:
the hints ship (py.typed), the lazily loaded names are typed from their defining modules, `inject` takes the
keywords `Adapters.add` does, a view's own adapter is the one saved, and `load_buffers` changes nothing it refuses."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError

ROOT = Path(__file__).resolve().parents[1]
LAZY_PACKAGES = ["lowdim", "lowdim.injection", "lowdim.spaces", "lowdim.hyper"]


def test_the_wheel_ships_a_py_typed_marker_for_each_package_with_hints():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in config["package-data"]["*"]
    for folder in ("lowdim", "lowdim_sd", "cli"):
        assert (ROOT / folder / "py.typed").is_file(), folder


def _type_checking_imports(package: str) -> dict[str, str]:
    """name -> module, as the package's `if TYPE_CHECKING:` block imports it."""
    path = ROOT / Path(*package.split(".")) / "__init__.py"
    names: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) in ("TYPE_CHECKING", "_TYPE_CHECKING"):
            for imported in node.body:
                assert isinstance(imported, ast.ImportFrom)
                names.update({alias.asname or alias.name: imported.module for alias in imported.names})
    return names


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_type_checkers_see_every_lazy_name_imported_from_the_module_that_defines_it(package):
    """A name imported from a package that makes it with __getattr__ is `Any` to mypy and pyright."""
    seen = _type_checking_imports(package)
    module = importlib.import_module(package)
    eager = {"__version__", "AdapterFileError", "ConfigError", "LowdimError", "PluginError"}  # lowdim.errors
    assert sorted(set(module.__all__) - eager - set(seen)) == [], package
    for name, origin in seen.items():
        assert not (ROOT / Path(*origin.split(".")) / "__init__.py").exists(), f"{package}.{name} from {origin}"
        assert getattr(importlib.import_module(origin), name) is getattr(module, name), f"{package}.{name}"


def test_importing_lowdim_and_its_lazy_packages_loads_no_torch():
    code = ("import sys, lowdim, lowdim.injection, lowdim.spaces, lowdim.hyper; from lowdim import LayerSet; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_inject_spells_out_the_keywords_adapters_add_takes():
    inject = inspect.signature(lowdim.inject).parameters
    add = inspect.signature(lowdim.Adapters.add).parameters
    assert all(p.kind is not p.VAR_KEYWORD for p in inject.values())
    keywords = {name: p.default for name, p in add.items() if p.kind is p.KEYWORD_ONLY}
    assert {name: inject[name].default for name in keywords if name in inject} == keywords
    with pytest.raises(TypeError, match="sead"):
        lowdim.inject(nn.Linear(3, 3), lowdim.get_space("lora"), "*", sead=3)


@pytest.mark.parametrize("function", [lowdim.inject, lowdim.Adapters.add])
def test_targets_hint_takes_any_sequence_of_patterns_as_the_code_does(function):
    assert inspect.signature(function).parameters["targets"].annotation == "LayerSet | str | Sequence[str]"
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    assert len(lowdim.inject(net, lowdim.get_space("lora", rank=1), ("0", "1")).info().layers) == 2


def test_docs_import_the_inject_packages_names_since_lowdim_inject_is_the_function():
    assert "from lowdim.injection import" in lowdim.__doc__
    for page in ("hypernetwork.md", "hypertrain.md"):
        text = (ROOT / "docs" / page).read_text()
        assert not re.findall(r"(?<!from )lowdim\.inject\.[a-z_]+", text), page
        assert "from lowdim.injection import checkpointing_with_overrides" in text, page


def _two_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)).requires_grad_(False)


def test_save_adapter_of_a_view_saves_the_views_own_adapter(tmp_path):
    view = lowdim.inject(_two_layers(), lowdim.get_space("lora", rank=1), ["0"], name="mine")
    path = lowdim.save_adapter(tmp_path / "mine.safetensors", view)
    assert lowdim.read_adapter(path).metadata["adapter_name"] == "mine"
    bare = _two_layers()
    lowdim.inject(bare, lowdim.get_space("lora", rank=1), ["1"])
    assert lowdim.read_adapter(lowdim.save_adapter(tmp_path / "d.safetensors", bare)).metadata["adapter_name"] \
        == "default"


def _lidb(seed: int) -> lowdim.Adapters:
    return lowdim.inject(_two_layers(), lowdim.get_space("lidb", a=4, b=2, rank=1), ["0", "1"], seed=seed)


@pytest.mark.parametrize("broken", ["missing layer", "wrong shape", "missing buffer"])
def test_load_buffers_refuses_in_one_line_before_copying_anything(broken):
    adapters, other = _lidb(0), _lidb(5)
    before = {layer: {k: v.clone() for k, v in b.items()} for layer, b in adapters.buffers().items()}
    given = other.buffers()
    if broken == "missing layer":
        del given["1"]
    elif broken == "wrong shape":
        name = next(iter(given["1"]))
        given["1"][name] = given["1"][name][..., :-1]
    else:
        given["1"].pop(next(iter(given["1"])))
    with pytest.raises(LowdimError) as error:
        adapters.load_buffers("default", given)
    message = str(error.value)
    assert "\n" not in message and "adapter 'default'" in message and "'1'" in message or "1." in message, message
    after = adapters.buffers()
    assert all(torch.equal(before[layer][k], after[layer][k]) for layer in before for k in before[layer])


def test_load_buffers_copies_every_layers_buffers():
    adapters, other = _lidb(0), _lidb(5)
    adapters.load_buffers("default", other.buffers())
    after, wanted = adapters.buffers(), other.buffers()
    assert all(torch.equal(after[layer][k], wanted[layer][k]) for layer in wanted for k in wanted[layer])
