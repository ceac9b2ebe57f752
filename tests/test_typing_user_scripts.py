"""What a user's type checker makes of lowdim as the README and docs use it (tests/typing/*.py and the plugin
space of docs/plugins.md): a typo'd name of a lazily loaded package is an error, a hypernetwork's call returns
the dict `Adapters.override` takes, a config takes a transformers config object, a space on `Space[MyConfig]` has a
MyConfig as its config, the documented plugin passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from strict_checker import ROOT, check  # tests/, on the path as pytest puts it

pytestmark = pytest.mark.strict_checker  # conftest.py orders the suite by it

SCRIPTS = [ROOT / "tests" / "typing" / name
           for name in ("lazy_names.py", "hyper_calls.py", "metrics_use.py", "space_configs.py")]
PLUGIN_PAGE = ROOT / "docs" / "plugins.md"


def expected_errors(script: Path) -> set[tuple[str, int, str]]:
    """(file name, line, code) of each line ending ``# expect: CODE``."""
    lines = script.read_text().splitlines()
    return {(script.name, number, found.group(1)) for number, line in enumerate(lines, 1)
            if (found := re.search(r"# expect: ([\w-]+)$", line))}


@pytest.fixture(scope="module")
def documented_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/plugins.md's `my_space/__init__.py`, as a reader copies it into a package."""
    code = re.search(r"```python\n(# my_space/__init__\.py\n.*?)```", PLUGIN_PAGE.read_text(), re.S)
    assert code is not None, "docs/plugins.md shows no my_space/__init__.py"
    path = tmp_path_factory.mktemp("plugin") / "my_space" / "__init__.py"
    path.parent.mkdir()
    path.write_text(code.group(1))
    return path


@pytest.fixture(scope="module")
def reported(documented_plugin: Path) -> tuple[set[tuple[str, int, str]], list[str]]:
    """mypy's errors on every script at once: (file name, line, code), and the lines it could not place."""
    out, err, _ = check(*SCRIPTS, documented_plugin)
    errors = set()
    unplaced = [err] if err else []
    for line in out.splitlines():
        if ": error:" not in line:
            continue
        found = re.match(r"(.*?):(\d+): error: .*\[([\w-]+)\]$", line)
        if found is None or Path(found.group(1)).name not in {p.name for p in [*SCRIPTS, documented_plugin]}:
            unplaced.append(line)
        else:
            errors.add((Path(found.group(1)).name, int(found.group(2)), found.group(3)))
    return errors, unplaced + [out]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_a_users_checker_reports_exactly_the_marked_lines(script: Path, reported) -> None:
    errors, report = reported
    assert not report[:-1], report[-1]
    assert {error for error in errors if error[0] == script.name} == expected_errors(script), report[-1]


def test_the_documented_plugin_space_passes_a_strict_checker(documented_plugin: Path, reported) -> None:
    errors, report = reported
    assert {error for error in errors if error[0] == documented_plugin.name} == set(), report[-1]


@pytest.mark.parametrize(("folder", "package"), [("lowdim-vera", "lowdim_vera"),
                                                 ("lowdim-tinyfaces", "lowdim_tinyfaces")])
def test_each_first_party_plugin_ships_its_hints(folder: str, package: str) -> None:
    """Without py.typed in the wheel, a checker reads an installed plugin as untyped (every name Any)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = ROOT / "plugins" / folder
    config = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in config["package-data"][package]
    assert (project / package / "py.typed").is_file()
