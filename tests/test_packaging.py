"""The wheel's package list: every package folder is installed, and the CLI under a name of ours."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed_and_the_cli_as_lowdim_cli():
    config = setuptools_config()
    folders = {".".join(p.parent.relative_to(ROOT).parts) for top in ("lowdim", "lowdim_sd")
               for p in (ROOT / top).rglob("__init__.py")}
    assert folders | {"lowdim_cli"} == set(config["packages"])
    assert config["package-dir"] == {"lowdim_cli": "cli"}
    assert "cli" not in config["packages"]  # a top-level "cli" collides with other distributions


def test_no_code_imports_the_cli_folder_by_its_folder_name():
    # Imported as both cli and lowdim_cli, every module of the CLI would exist twice.
    pattern = re.compile(r"^\s*(from cli[. ]|import cli\b)", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for top in ("lowdim", "lowdim_sd", "cli", "tests", "plugins", "benchmarks")
                 for p in (ROOT / top).rglob("*.py") if "build" not in p.parts and pattern.search(p.read_text())]
    assert offenders == []


def floors(requirements: list[str]) -> dict[str, str]:
    """{'diffusers': '0.32', ...} from 'diffusers>=0.32' entries."""
    return dict(re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", entry).groups() for entry in requirements
                if re.fullmatch(r"[A-Za-z0-9_.-]+>=[0-9.]+", entry))


def test_the_oldest_releases_run_are_the_floors_pyproject_states():
    """.ci/oldest runs the suite on the floors docs/sd.md quotes; a floor raised or lowered alone would make
    that claim about releases nobody ran."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    stated = floors(project["dependencies"] + project["optional-dependencies"]["sd"]
                    + project["optional-dependencies"]["test"])
    pinned = dict(re.findall(r'"([a-z_]+)==([0-9.]+)"', (ROOT / ".ci" / "oldest").read_text()))
    for name in ("diffusers", "transformers", "accelerate", "safetensors", "peft"):
        floor = stated[name].split(".")
        assert pinned[name].split(".")[: len(floor)] == floor, (name, stated[name], pinned[name])


PROJECTS = [ROOT, ROOT / "plugins" / "lowdim-vera", ROOT / "plugins" / "lowdim-tinyfaces"]


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_every_distribution_carries_its_license(project):
    """Apache-2.0 asks for its text to go with every copy: each wheel and sdist ships the file it names."""
    config = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert config["license"] == "Apache-2.0"
    assert config["license-files"] == ["LICENSE"] and "Apache License" in (project / "LICENSE").read_text()


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_no_sdist_ships_tests_it_cannot_run(project):
    """The tests need the whole checkout (conftest, fixtures, benchmarks, the other plugins): a source release
    with some of them would only collect with errors."""
    lines = (project / "MANIFEST.in").read_text().splitlines()
    assert "prune tests" in lines


@pytest.mark.parametrize("project", PROJECTS[1:], ids=lambda p: p.name)
def test_every_plugin_states_the_lowdim_it_needs_and_installs_beside_this_one(project):
    """A plugin without a floor would let pip keep an older lowdim that lacks the hooks it implements; a floor past
    this lowdim's version would make the plugin uninstallable beside it."""
    config = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    wanted = config["dependencies"] + [entry for extra in config.get("optional-dependencies", {}).values()
                                       for entry in extra]
    lowdim = [re.fullmatch(r"lowdim(\[[a-z,]+\])?>=([0-9.]+)", entry) for entry in wanted
              if re.match(r"lowdim\b(?!-)", entry)]
    assert lowdim and all(lowdim), wanted  # named, each with a floor
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert all(release(match.group(2)) <= release(ours) for match in lowdim)


def release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))
