"""The space docs/plugins.md shows, run as it is written there: a reader who copies it gets a working plugin."""

from __future__ import annotations

import copy
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import lowdim

PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def documented_plugin(monkeypatch) -> types.ModuleType:
    """The page's `my_space/__init__.py`, imported as a plugin's entry point would import it."""
    code = re.search(r"```python\n(# my_space/__init__\.py\n.*?)```", PAGE.read_text(), re.S).group(1)
    module = types.ModuleType("my_space")
    monkeypatch.setitem(sys.modules, "my_space", module)  # where dataclasses look a class's module up
    exec(compile(code, str(PAGE), "exec"), module.__dict__)
    return module


def test_the_documented_space_registers_trains_merges_and_loads_from_its_file(tmp_path, monkeypatch):
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", documented_plugin(monkeypatch)])
    assert registry.spaces["frozen-down"].plugin == "my_space"
    with lowdim.use_registry(registry):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4)).requires_grad_(False)
        base = copy.deepcopy(model)
        x = torch.randn(5, 8)
        adapters = lowdim.inject(model, lowdim.get_space("frozen-down", rank=2), ["0", "2"], seed=3)
        assert torch.equal(model(x), base(x))  # ΔW = 0 at the start
        assert adapters.info("default").num_params == 6 * 2 + 4 * 2  # only the up matrices train
        optimizer = torch.optim.SGD(adapters.parameters("default"), lr=0.5)
        model(x).pow(2).sum().backward()
        optimizer.step()
        trained = model(x).detach()
        assert not torch.allclose(trained, base(x))
        path = lowdim.save_adapter(tmp_path / "frozen-down.safetensors", model)
        fresh = copy.deepcopy(base)
        lowdim.load_adapter(path, fresh)  # the frozen down-projections come back from the seed
        assert torch.allclose(fresh(x), trained, atol=1e-6)
        adapters.merge("default")
        with torch.no_grad():  # evaluated, as a merged model is: with grad on lowdim warns to unmerge it first
            assert torch.allclose(model(x), trained, atol=1e-5)  # merged weights compute what the adapter did


def test_the_documented_config_refuses_a_rank_below_one_in_one_line(monkeypatch):
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", documented_plugin(monkeypatch)])
    with lowdim.use_registry(registry):
        for rank in (0, -1):
            with pytest.raises(lowdim.ConfigError, match=f"^frozen-down: rank must be >= 1, got {rank}$"):
                lowdim.get_space("frozen-down", rank=rank)


def test_the_documented_pyproject_builds_a_package_whose_entry_point_names_the_plugin(tmp_path, monkeypatch):
    import subprocess
    import zipfile

    import tomllib

    text = PAGE.read_text()
    toml = re.search(r"```toml\n(# pyproject\.toml.*?)```", text, re.S).group(1)
    assert tomllib.loads(toml)["project"]["entry-points"]["lowdim"] == {"frozen-down": "my_space"}
    (tmp_path / "my_space").mkdir()
    (tmp_path / "my_space" / "__init__.py").write_text(
        re.search(r"```python\n(# my_space/__init__\.py\n.*?)```", text, re.S).group(1))
    (tmp_path / "pyproject.toml").write_text(toml)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(tmp_path)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))) as wheel:
        names = wheel.namelist()
        entry_points = wheel.read(next(name for name in names if name.endswith("entry_points.txt"))).decode()
    assert "my_space/__init__.py" in names
    assert "[lowdim]\nfrozen-down = my_space" in entry_points
