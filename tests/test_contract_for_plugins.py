"""A third-party space runs the whole shared contract as its author would, from an installed lowdim:
``python -m pytest --pyargs lowdim.testing.space_contract -k NAME`` or docs/plugins.md's own test module,
in the author's own folder.

The plugin is installed the way pip leaves one (a ``*.dist-info`` folder with an entry point) in a
temporary folder on the subprocess's path, so nothing of this checkout's ``tests/`` is involved. The one
difference from an author's run: Hypothesis's explain phase, which only annotates a failure's report, is left out
(WITHOUT_EXPLAIN), and pytest's collection of unraisable exceptions at exit (`-p no:unraisableexception`). The
scenarios of this module, tests/test_contract_culprits.py and tests/test_contract_messages.py share one run
(``contract_run``), each with its own plugin and ``-k``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass

    import torch

    from lowdim import Space, SpaceConfig, option
    from lowdim.hookspecs import hookimpl


    @dataclass
    class ScaledConfig(SpaceConfig):
        rank: int = option(2, "Width r of the update.")


    class ScaledDown(Space):
        """ΔW = up · diag(s) · down: down and up frozen and random, the r scales s trained from zero."""

        name = "scaled-down"
        config_class = ScaledConfig

        def param_shapes(self, layer):
            return {"s": (self.config.rank,)}

        def init_params(self, layer, generator):
            return {"s": torch.zeros(self.config.rank)}

        def make_buffers(self, layer, seed):
            generator = torch.Generator().manual_seed(seed)
            return {"down": torch.randn(self.config.rank, layer.in_features, generator=generator, dtype=torch.float64),
                    "up": torch.randn(layer.out_features, self.config.rank, generator=generator, dtype=torch.float64)}

        def scales(self, s):
            return s

        def factors(self, params, buffers):
            s = self.scales(params["s"])  # (..., r)
            down = buffers["down"] * s[..., :, None]
            return down, buffers["up"].expand(*down.shape[:-2], *buffers["up"].shape)


    class FirstSampleOnly(ScaledDown):
        """The same space with a per-sample bug: a batch of K adapters all get the first one's scales."""

        name = "scaled-down-buggy"

        def scales(self, s):
            return s.reshape(-1, s.shape[-1])[0].expand(s.shape)


    @hookimpl
    def register_spaces(register):
        register(ScaledDown)
        register(FirstSampleOnly)
''')


def install_plugin(site: Path, module: str, code: str) -> None:
    (site / f"{module}.py").write_text(code)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lowdim]\n{module} = {module}\n")


# Hypothesis's explain phase runs after a failure is found and shrunk, only to annotate the failure's report with
# which parts of the example mattered: over half of a run here, where most properties fail on purpose, and none of
# its words are asserted. This pytest plugin (`-p`) leaves it out, every other setting as the run would have it.
WITHOUT_EXPLAIN = textwrap.dedent("""
    from hypothesis import Phase, settings

    phases = [phase for phase in settings.default.phases if phase is not Phase.explain]
    settings.register_profile("without-explain", settings(settings.default, phases=phases))
    settings.load_profile("without-explain")
""")


def run_pytest(site: Path, author: Path, keywords: str, *target: str) -> Path:
    """Runs pytest on ``target`` with ``-k keywords`` in the author's folder; its JUnit report. The only plugins
    left out are ones no author's run of the contract needs (parallel runs, benchmarks: they cost start-up time;
    unraisable exceptions, which only add a warning to the summary, after a second of full garbage collections)."""
    report = author / "report.xml"
    (site / "hypothesis_without_explain.py").write_text(WITHOUT_EXPLAIN)  # on the path, but no plugin of lowdim's
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p",
                    "no:benchmark", "-p", "no:unraisableexception", "-p", "hypothesis_without_explain", *target,
                    "-k", keywords,
                    f"--junitxml={report}"], cwd=author, env=env, capture_output=True, text=True, timeout=600)
    return report


def outcomes_in(report: Path, module: str | None = None) -> dict[str, dict[str, str]]:
    """space -> test -> passed / failed / skipped from a JUnit report; of one test module's tests (its JUnit
    classname, as ``test_contract``) where ``module`` is given."""
    outcomes: dict[str, dict[str, str]] = {}
    for case in ET.parse(report).iter("testcase"):
        if module is not None and case.get("classname") != module:
            continue
        test, space_name = case.get("name").rstrip("]").split("[")
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        outcomes.setdefault(space_name, {})[test] = outcome
    return outcomes


def folders(tmp_path: Path) -> tuple[Path, Path]:
    site, author = tmp_path / "site", tmp_path / "author"
    site.mkdir(), author.mkdir()
    return site, author


def documented(name: str) -> str:
    return re.search(rf"```python\n(# {re.escape(name)}\n.*?)```", PAGE.read_text(), re.S).group(1)


def replaced(text: str, old: str, new: str) -> str:
    assert old in text, f"docs/plugins.md no longer has {old!r}"
    return text.replace(old, new)


# One pytest run serves every scenario of this module, tests/test_contract_culprits.py and
# tests/test_contract_messages.py, each selected by -k in its own module, with its own spaces: the plugin space
# with all its checks beside its per-sample-buggy twin (only the checks asserted on it), the plugin that fails to
# load, docs/plugins.md's test module over the documented space, that module with a wrong formula, and the two
# plugins of slips (culprits, messages). Each run starts torch, every plugin and the fresh-process child anew: one
# run instead of five. REFERENCE_DELTA is one dict, so the wrong formula is the documented module's over a copy of
# the documented space renamed "frozen-down-wrong": the right module's formula for "frozen-down" stays.
SHARED_RUN = ("(space_contract and (scaled and not buggy or buggy and (override_runs or an_embedding or forward_is)"
              " or broken_space)) or (test_contract and frozen-down and not frozen-down-wrong)"
              " or (test_wrong_formula and frozen-down-wrong and (factors_and_delta or default_init))")


def contract_run(tmp_path_factory) -> Path:
    """The JUnit report of the one shared run, made by the first module of a session (of all xdist workers, which
    share the session's base folder) to ask: the others wait for it and read it."""
    from filelock import FileLock  # huggingface_hub's dependency, so there wherever diffusers is
    from test_contract_culprits import CHOSEN as CULPRITS
    from test_contract_culprits import SLIPS as GAINY
    from test_contract_messages import CHOSEN as MESSAGES
    from test_contract_messages import SLIPS as GATED

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "contract-run"
    with FileLock(f"{root}.lock"):
        done = root / "done.json"
        if done.is_file():
            return Path(json.loads(done.read_text()))
        root.mkdir(exist_ok=True)
        site, author = folders(root)
        install_plugin(site, "scaled_down", PLUGIN)
        install_plugin(site, "broken_space", "raise RuntimeError('a bug at import')\n")
        install_plugin(site, "gainy_slips", GAINY)
        install_plugin(site, "gated_slips", GATED)
        space, module = documented("my_space/__init__.py"), documented("tests/test_contract.py")
        install_plugin(site, "my_space", space)
        (author / "test_contract.py").write_text(module)
        install_plugin(site, "my_space_wrong", replaced(space, '"frozen-down"', '"frozen-down-wrong"'))
        wrong = replaced(replaced(module, '"frozen-down"', '"frozen-down-wrong"'), 'params["up"] @ buffers["down"]',
                         '2 * params["up"] @ buffers["down"]')
        (author / "test_wrong_formula.py").write_text(wrong)
        report = run_pytest(site, author, f"{SHARED_RUN} or (space_contract and ({CULPRITS} or {MESSAGES}))",
                            "--pyargs", "lowdim.testing.space_contract", "test_contract.py", "test_wrong_formula.py")
        done.write_text(json.dumps(str(report)))
        return report


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory) -> Path:
    return contract_run(tmp_path_factory)


def test_the_contract_runs_every_check_on_a_plugin_space_and_catches_a_per_sample_bug(shared_run):
    outcomes = outcomes_in(shared_run)
    scaled = {name for name in outcomes if "scaled" in name}
    assert scaled == {"scaled-down", "scaled-down-buggy", "scaled_down"}  # the last: the plugin's load check
    assert outcomes["scaled_down"] == {"test_the_plugin_loads_and_registers_without_warnings": "passed"}
    assert len(outcomes["scaled-down"]) >= 12 and set(outcomes["scaled-down"].values()) == {"passed"}
    assert outcomes["scaled-down-buggy"] == {
        "test_override_runs_the_wrapped_layers_on_given_tensors_per_sample": "failed",
        "test_on_an_embedding_a_lookup_is_a_row_of_the_spaces_update": "failed",
        "test_forward_is_the_spaces_math_and_only_trainable_params_get_gradients": "passed"}


def test_a_plugin_that_fails_to_load_fails_the_contract_run_that_selects_it(shared_run):
    outcomes = outcomes_in(shared_run)
    assert outcomes["broken_space"] == {"test_the_plugin_loads_and_registers_without_warnings": "failed"}


def test_the_documented_test_module_passes_the_documented_space(shared_run):
    outcomes = outcomes_in(shared_run, module="test_contract")["frozen-down"]
    assert len(outcomes) >= 12 and set(outcomes.values()) == {"passed"}


def test_the_documented_test_module_fails_the_documented_space_against_a_wrong_formula(shared_run):
    outcomes = outcomes_in(shared_run, module="test_wrong_formula")["frozen-down-wrong"]
    assert outcomes == {"test_factors_and_delta_give_the_spaces_own_update_within_its_rank": "failed",
                        "test_default_init_leaves_model_output_unchanged": "passed"}
