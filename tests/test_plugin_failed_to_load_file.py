"""A file made with a plugin that is installed here but failed to load (its import raised, or its hook did) is told
so, with the error: never "not installed here; install the plugin", which sends the user to a `pip install` that
does nothing (review DI, finding 1)."""

from __future__ import annotations

import types
import warnings
from importlib.metadata import entry_points

import pytest
from test_plugins import hookimpl
from torch import nn

import lowdim
from lowdim import plugins
from lowdim import registry as registry_module
from lowdim_cli.main import main


@pytest.fixture
def vera_adapter(tmp_path):
    """A file of the first-party plugin space 'vera', which records its package, lowdim-vera."""
    model = nn.Sequential(nn.Linear(4, 4))
    lowdim.inject(model, lowdim.get_space("vera"), "0")
    path = lowdim.save_adapter(tmp_path / "v.safetensors", model)
    assert lowdim.read_adapter(path).metadata["space_package"] == "lowdim-vera"
    return path


def install_vera_as(monkeypatch, load) -> None:
    """The installed plugins as they are, but lowdim-vera's entry point loads through ``load``; discovery and the
    process-wide registry start afresh, as in a new process."""
    others = [point for point in entry_points(group="lowdim") if point.name != "vera"]
    vera = types.SimpleNamespace(name="vera", value="lowdim_vera", dist=types.SimpleNamespace(name="lowdim-vera"),
                                 load=load)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [*others, vera])
    monkeypatch.setattr(plugins, "_installed", None)
    monkeypatch.setattr(plugins, "_failed_to_load", {})
    monkeypatch.setattr(registry_module, "_current", None)
    monkeypatch.setenv("COLUMNS", "400")  # show's table rows unwrapped
    warnings.simplefilter("ignore", plugins.PluginWarning)  # the load's own warning: not what is tested


def import_raises():
    raise ImportError("cannot import name 'gone' from 'lowdim_vera.space'")


def hook_raises():
    def register_spaces(register):
        raise RuntimeError("boom in the hook")

    module = types.ModuleType("lowdim_vera_broken")
    module.register_spaces = hookimpl(register_spaces)
    return module


def run(argv, capsys) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        code = main(argv)
    said = capsys.readouterr()
    return code, said.out, said.err


@pytest.mark.parametrize(("load", "why"), [
    (import_raises, "failed to load (ImportError: cannot import name 'gone' from 'lowdim_vera.space')"),
    (hook_raises, "registers no space 'vera' here"),
], ids=["import", "hook"])
def test_show_of_a_file_whose_installed_plugin_failed_says_so_not_install_it(monkeypatch, capsys, vera_adapter,
                                                                             load, why):
    from lowdim_cli import console

    install_vera_as(monkeypatch, load)
    monkeypatch.setattr(console.out, "_width", 400)  # one line a row: a cell's text is not cut by the table's bars
    code, out, _ = run(["show", str(vera_adapter)], capsys)
    flat = " ".join(out.split())
    assert code == 0, out
    assert "package lowdim-vera, which is installed but" in flat and why in flat, flat
    assert "not installed here" not in flat and "needs" not in flat


@pytest.mark.parametrize(("load", "why"), [
    (import_raises, "failed to load (ImportError: cannot import name 'gone' from 'lowdim_vera.space')"),
    (hook_raises, "registers no space 'vera' here"),
], ids=["import", "hook"])
def test_generate_with_such_a_file_is_one_line_saying_the_plugin_failed(monkeypatch, capsys, tmp_path, vera_adapter,
                                                                        load, why):
    install_vera_as(monkeypatch, load)
    code, _, err = run(["generate", "-m", "tinyfaces", "-a", str(vera_adapter), "-p", "a [V] face",
                        "-o", str(tmp_path / "g")], capsys)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("Warning")]
    said = " ".join(" ".join(lines).split())
    assert code == 1 and said.startswith("Error:"), err
    assert "package lowdim-vera, which is installed but" in said and why in said, said
    assert "not installed here" not in said and "install the plugin" not in said, said
    assert "Traceback" not in err
    assert not (tmp_path / "g").exists()


def test_the_failed_plugins_error_is_what_lowdim_version_lists(monkeypatch, capsys, vera_adapter):
    install_vera_as(monkeypatch, import_raises)
    _, out, _ = run(["show", str(vera_adapter)], capsys)
    assert "`lowdim --version` lists" in " ".join(out.split())
    assert plugins.failed_to_load()["lowdim-vera"].startswith("ImportError: cannot import name 'gone'")
