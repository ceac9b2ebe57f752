"""Review EO: what ``lowdim show`` of a model prints. ``show tinyfaces`` (show's own example) and show of a model
folder (one whose text encoder's token ids lie past its vocabulary too) print no transformers config warning
from their meta-device checks, and leave the libraries' verbosity as
it was; ``show sd15`` names the plugin that registered it as ``lowdim models`` does; ``tinyfaces-identities``
counts its identities in the right number."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

# Their own process: transformers warns of a config once per process, and another test may have had it warned
# already. One process shows both, each as a fresh process would: before each, the once-only caches that a show
# before it filled (transformers' and diffusers' warning_once, lowdim's functools caches) are emptied.
SEPARATOR = "\n--- the next show ---\n"
SHOWS = f"""
import json, logging, sys
from lowdim_cli.main import main

def as_fresh():
    once = getattr(logging.Logger, "warning_once", None)
    lowdims = [value for name, module in list(sys.modules.items()) if name.split(".")[0].startswith("lowdim")
               for value in list(vars(module).values()) if callable(getattr(value, "cache_clear", None))]
    for cached in [once, *lowdims] if once is not None else lowdims:
        cached.cache_clear()

for argv in json.loads(sys.argv[1]):
    as_fresh()
    for stream in (sys.stdout, sys.stderr):
        stream.write({SEPARATOR!r})
        stream.flush()
    if main(["show", *argv]) != 0:
        sys.exit(1)
"""
# "past-vocabulary": a copy of the folder whose text encoder's token ids lie past its vocabulary, which transformers
# notes at every build of such a config: the meta-device check of the parts must keep it quiet too.
SHOWN = {"name": ("tinyfaces",), "folder-json": ("--json", "FOLDER"), "past-vocabulary": ("PAST_VOCABULARY",)}


def tinyfaces_folder() -> str:
    from lowdim.registry import get_registry

    return str(get_registry().backend_entry("tinyfaces").value.source)


def past_vocabulary(folder: Path) -> str:
    """A copy of the TinyFaces folder (its pictures left out) whose text encoder's token ids are past its vocabulary."""
    shutil.copytree(tinyfaces_folder(), folder, ignore=shutil.ignore_patterns("*.png"))
    config = folder / "text_encoder" / "config.json"
    settings = json.loads(config.read_text())
    past = settings["vocab_size"] + 100
    config.write_text(json.dumps({**settings, "bos_token_id": past, "eos_token_id": past + 1, "pad_token_id": past}))
    return str(folder)


@pytest.fixture(scope="module")
def shows(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """stdout and stderr of `lowdim show ARGV` for each of SHOWN, all in one fresh process, each as if fresh."""
    places = {"FOLDER": tinyfaces_folder(), "PAST_VOCABULARY": past_vocabulary(tmp_path_factory.mktemp("show") / "m")}
    argvs = [[places.get(word, word) for word in argv] for argv in SHOWN.values()]
    done = subprocess.run([sys.executable, "-c", SHOWS, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    outs, errs = (stream.split(SEPARATOR)[1:] for stream in (done.stdout, done.stderr))
    assert len(outs) == len(errs) == len(SHOWN), done.stderr[-2000:]
    return dict(zip(SHOWN, zip(outs, errs, strict=True), strict=True))


@pytest.mark.parametrize("argv", list(SHOWN))
def test_show_of_tinyfaces_prints_no_transformers_warning(shows, argv):
    out, err = shows[argv]
    assert "[transformers]" not in err and "bos_token_id" not in err and "eos_token_id" not in err, err
    assert err.strip() == "", err
    assert out.strip(), "show printed nothing"


def test_show_leaves_the_libraries_verbosity_as_it_was(capsys):
    """Silenced around the check only: a program that imports lowdim keeps transformers' and diffusers' settings."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    before = transformers_logging.get_verbosity(), diffusers_logging.get_verbosity()
    transformers_logging.set_verbosity_info()
    try:
        assert main(["show", "tinyfaces"]) == 0
        assert transformers_logging.get_verbosity() == transformers_logging.INFO
        assert diffusers_logging.get_verbosity() == before[1]
    finally:
        transformers_logging.set_verbosity(before[0])
    capsys.readouterr()


@pytest.mark.parametrize("name", ["sd15", "sd1.5", "tinyfaces"])
def test_show_names_the_plugin_as_lowdim_models_does(name, capsys):
    from lowdim.registry import get_registry
    from lowdim_cli.info_commands import registered_models

    backend = get_registry().backend_entry(name).value
    listed = {model.name: plugin for model, plugin, _ in registered_models()}[backend.name]
    assert main(["show", name, "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["fields"]["registered_by"]
    assert said in (listed, f"the plugin {listed}"), (said, listed)
    assert main(["models"]) == 0
    assert listed in capsys.readouterr().out
    assert main(["show", name]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "registered by" in line)
    assert said in row and (listed != "builtin" or "plugin" not in row), row


def test_sd15_is_lowdims_own_in_show_as_in_models(capsys):
    assert main(["show", "sd15", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"]["registered_by"] == "builtin"


@pytest.mark.parametrize(("count", "noun"), [(1, "identity"), (2, "identities"), (3, "identities")])
def test_tinyfaces_identities_counts_in_the_right_number(tmp_path, capsys, count, noun):
    command = ["tinyfaces-identities", "-o", str(tmp_path / "ids"), "--count", str(count), "--split", "test"]
    assert main(command) == 0
    assert f"wrote {count} {noun} (test split) to " in capsys.readouterr().out
    assert main(command) == 0  # again: nothing to write
    these = "this" if count == 1 else "these"
    assert f"already holds {these} {count} {noun} (test split, seed 0); nothing to write" in capsys.readouterr().out
