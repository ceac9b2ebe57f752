"""A plugin author's type checker checks what their hooks register (lowdim.hookspecs' ``Register*`` aliases): a
space that is no Space class, a backend that is no Backend, a head or metric factory of the wrong shape is an
error on that line, while the built-in factories pass; and naming those types costs `lowdim --help` no import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from strict_checker import check  # tests/, on the path as pytest puts it

pytestmark = pytest.mark.strict_checker  # conftest.py orders the suite by it

PLUGIN = '''\
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lowdim.backends import Backend
from lowdim.hookspecs import RegisterBackend, RegisterHead, RegisterMetric, RegisterSpace, hookimpl
from lowdim.hyper.config import HyperConfig
from lowdim.hyper.network import build_transformer
from lowdim.metrics import Metric
from lowdim.spaces.base import LayerSpec, Space
from lowdim.spaces.lora import LoraSpace


def head_without_layers(config: HyperConfig, space: Space) -> nn.Module:
    return nn.Identity()


def head_of_no_module(config: HyperConfig, space: Space, layers: Sequence[LayerSpec]) -> str:
    return "head"


def no_metric(**options: object) -> int:
    return 3


def a_metric(**options: object) -> Metric:
    raise NotImplementedError


@hookimpl
def register_spaces(register: RegisterSpace) -> None:
    register(LoraSpace)
    register(int)  # expect: arg-type
    register(LoraSpace())  # expect: arg-type


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(Backend())
    register("sd15")  # expect: arg-type
    register(Backend)  # expect: arg-type


@hookimpl
def register_heads(register: RegisterHead) -> None:
    register("transformer", build_transformer)
    register("short", head_without_layers)  # expect: arg-type
    register("text", head_of_no_module)  # expect: arg-type


@hookimpl
def register_metrics(register: RegisterMetric) -> None:
    register("good", a_metric)
    register("three", no_metric)  # expect: arg-type
'''


def expected_errors(text: str) -> set[tuple[int, str]]:
    return {(number, found.group(1)) for number, line in enumerate(text.splitlines(), 1)
            if (found := re.search(r"# expect: ([\w-]+)$", line))}


# mypy through tests/strict_checker.py's one cache: the suite pays its cold minute once, whoever runs first
def test_a_plugin_registering_the_wrong_thing_is_flagged_on_that_line(tmp_path: Path) -> None:
    plugin = tmp_path / "wrong_plugin.py"
    plugin.write_text(PLUGIN)
    out, err, _ = check(plugin)
    errors = {(int(line), code) for line, code in re.findall(r"wrong_plugin\.py:(\d+): error: .*\[([\w-]+)\]$",
                                                             out, re.MULTILINE)}
    unexplained = [line for line in out.splitlines() if ": error:" in line and "wrong_plugin.py" not in line]
    assert not unexplained and not err, out + err
    assert errors == expected_errors(PLUGIN), out


def test_the_hook_types_import_nothing_heavy() -> None:
    """A plugin imports the aliases at run time; `lowdim --help` loads every plugin, so they must stay free."""
    code = ("import sys; from lowdim.hookspecs import RegisterBackend, RegisterHead, RegisterMetric, RegisterSpace;"
            "print(sorted(m for m in ('torch', 'diffusers', 'typer', 'lowdim.registry', 'lowdim.backends')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
