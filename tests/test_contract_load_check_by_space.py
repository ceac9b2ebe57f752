"""The contract suite's load check is selected by a space's name too: a package whose one entry point registers
several spaces cannot give the entry point each space's name, and ``-k SPACE`` must still run the check that fails
when its plugin warned while loading."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from test_contract_for_plugins import install_plugin

LOAD_CHECK = "test_the_plugin_loads_and_registers_without_warnings"
# One entry point (two_spaces), two spaces; the second's option has no help text, which warns as it registers.
PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass

    import torch

    from lowdim import Space, SpaceConfig, option
    from lowdim.hookspecs import hookimpl


    @dataclass
    class Config(SpaceConfig):
        rank: int = option(1, "Width of the update.")


    @dataclass
    class Unhelped(Config):  # Beta derives from Alpha, so its config from Alpha's (else it is refused)
        rank: int = 1


    class Alpha(Space):
        name = "alpha-space"
        config_class = Config

        def param_shapes(self, layer):
            return {"up": (layer.out_features, 1)}

        def init_params(self, layer, generator):
            return {"up": torch.zeros(layer.out_features, 1)}

        def factors(self, params, buffers):
            up = params["up"]
            return torch.ones(*up.shape[:-2], 1, 3, dtype=up.dtype), up


    class Beta(Alpha):
        name = "beta-space"
        config_class = Unhelped


    @hookimpl
    def register_spaces(register):
        register(Alpha)
        register(Beta)
''')


def run_suite(tmp_path: Path, *arguments: str) -> str:
    site, author = tmp_path / "site", tmp_path / "author"
    site.mkdir(exist_ok=True), author.mkdir(exist_ok=True)
    if not (site / "two_spaces.py").exists():
        install_plugin(site, "two_spaces", PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--pyargs",
                           "lowdim.testing.space_contract", *arguments], cwd=author, env=env, capture_output=True,
                          text=True, timeout=600)
    return done.stdout + done.stderr


def test_each_space_an_entry_point_registers_names_a_load_check_of_its_own(tmp_path):
    said = run_suite(tmp_path, "--collect-only", "-k", LOAD_CHECK)
    for case in ("two_spaces", "alpha-space", "beta-space"):
        assert f"{LOAD_CHECK}[{case}]" in said, said


def test_dash_k_a_space_runs_the_load_check_that_fails_on_its_plugins_warning(tmp_path):
    said = run_suite(tmp_path, "-k", f"alpha-space and {LOAD_CHECK}")
    assert "1 failed" in said and "FAILED " in said and f"{LOAD_CHECK}[alpha-space]" in said, said
    assert "plugin 'two_spaces'" in said and "option 'rank' of Unhelped" in said, said
