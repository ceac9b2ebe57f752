"""Public and documented APIs carry type hints, hook implementations as the hookspecs do: an editor or type
checker then tells a caller (or a plugin author copying docs/plugins.md) what goes in and what comes out."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINYFACES = "plugins/lowdim-tinyfaces/lowdim_tinyfaces/plugin.py"

# (file, function or Class.method): every parameter but self/cls annotated, and the return.
PUBLIC = [
    ("lowdim/spaces/stack.py", "StackSpace.split_factors"),
    ("lowdim_sd/runs.py", "autocast"),
    ("lowdim_sd/plugin.py", "SDBackend.__init__"),
    ("lowdim_sd/feature_file.py", "StoredFeatures.__init__"),
    ("lowdim_sd/hypertrain_losses.py", "Diffusion.__init__"),
    ("lowdim/spaces/builtin.py", "register_spaces"),
    ("lowdim/hyper/builtin.py", "register_heads"),
    (TINYFACES, "register_backends"),
    (TINYFACES, "register_metrics"),
    (TINYFACES, "register_commands"),
    ("lowdim/testing/contract_cases.py", "cases"),
]


def _find(tree: ast.Module, qualname: str) -> ast.FunctionDef:
    scope: list[ast.stmt] = tree.body
    *classes, name = qualname.split(".")
    for class_name in classes:
        scope = next(n for n in scope if isinstance(n, ast.ClassDef) and n.name == class_name).body
    return next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == name)


def _unannotated(function: ast.FunctionDef, is_method: bool) -> list[str]:
    arguments = function.args
    named = arguments.posonlyargs + arguments.args
    if is_method:
        named = named[1:]  # self or cls
    every = named + arguments.kwonlyargs + [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    missing = [a.arg for a in every if a.annotation is None]
    return missing + (["return"] if function.returns is None else [])


@pytest.mark.parametrize(("path", "qualname"), PUBLIC)
def test_public_function_is_fully_annotated(path: str, qualname: str) -> None:
    function = _find(ast.parse((ROOT / path).read_text()), qualname)
    assert _unannotated(function, is_method="." in qualname) == [], f"{path}: {qualname}"


def test_hook_implementations_in_the_plugin_guide_are_annotated() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), re.S)
    hooks = [node for block in blocks for node in ast.walk(ast.parse(block))
             if isinstance(node, ast.FunctionDef) and node.name.startswith("register_")]
    assert hooks, "docs/plugins.md shows no hook implementation"
    assert {hook.name: _unannotated(hook, is_method=False) for hook in hooks} == {h.name: [] for h in hooks}
