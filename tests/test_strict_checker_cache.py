"""The user's strict checker (tests/strict_checker.py) reuses the project's mypy cache, which holds only while both
give every library lowdim imports the same options: mypy compares them module by module before it reuses an entry.
A flag added to one side alone would make the suite analyse torch, transformers and diffusers twice again, a
minute and a half of CPU, without any test failing."""

from __future__ import annotations

from pathlib import Path

import pytest
from strict_checker import CACHE, FLAGS, ROOT  # tests/, on the path as pytest puts it

LIBRARIES = ["torch", "torch.nn.modules.module", "diffusers", "diffusers.models.unets.unet_2d_condition",
             "transformers", "transformers.models.clip.modeling_clip", "safetensors.torch", "PIL.Image", "numpy",
             "typer", "pluggy"]


def options(args: list[str]):
    main = pytest.importorskip("mypy.main")
    return main.process_options(args)[1]


def cached_options(options, module: str, but: str = "") -> dict:
    """The options of ``module`` that mypy compares before it reuses the module's cache entry."""
    from mypy.options import OPTIONS_AFFECTING_CACHE

    given = options.clone_for_module(module)
    return {name: getattr(given, name) for name in sorted(OPTIONS_AFFECTING_CACHE) if name != but}


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple:
    script = tmp_path_factory.mktemp("script") / "script.py"
    script.write_text("import lowdim\n")
    project = options(["--config-file", str(ROOT / "pyproject.toml"), str(script)])
    return project, options([*FLAGS, str(script)])


def test_the_user_checker_gives_each_library_the_projects_options(both):
    project, user = both
    for module in LIBRARIES:
        assert cached_options(user, module) == cached_options(project, module), module


def test_both_read_and_write_the_one_cache_of_one_python_version(both):
    project, user = both
    assert project.python_version == user.python_version
    assert ROOT / project.cache_dir == Path(user.cache_dir) == CACHE  # .ci/run runs the project's from ROOT


def test_lowdims_own_modules_are_checked_as_without_the_libraries_settings(both, tmp_path):
    # The project's strict settings are for the libraries only: its own code is checked with mypy's defaults and
    # the three settings it had before. follow_imports differs and means nothing there: its modules are all given.
    project, _ = both
    script = tmp_path / "script.py"
    script.write_text("import lowdim\n")
    before = options(["--config-file=", "--python-version", "3.10", "--ignore-missing-imports",
                      "--warn-unused-ignores", str(script)])
    for module in ["lowdim.files", "lowdim_sd.personalize", "cli.main", "lowdim_cli.errors", "lowdim_tinyfaces",
                   "lowdim_vera.space"]:
        assert cached_options(project, module, but="follow_imports") == \
            cached_options(before, module, but="follow_imports"), module
