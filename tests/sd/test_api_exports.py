"""The lowdim_sd modules users import from say what their API is (``__all__``): ``help()`` and pydoc show the
documented names (``detach_adapters`` beside ``attach_adapters``), not the internal helpers, and every name
docs/sd.md imports from them is in it. ``load_sd`` takes a Path as it takes a str."""

from __future__ import annotations

import importlib
import pydoc
import re
from pathlib import Path

import pytest

from lowdim.errors import LowdimError

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["lowdim_sd.generate", "lowdim_sd.personalize", "lowdim_sd.workflows", "lowdim_sd.loading"]
DOCUMENTED = {
    "lowdim_sd.generate": {"GenerateConfig", "Generated", "attach_adapters", "detach_adapters", "generate",
                           "draw_to_folder"},
    "lowdim_sd.personalize": {"PersonalizeJob", "PersonalizeResult", "personalize"},
    "lowdim_sd.workflows": {"TrainJob", "TrainResult", "Subject", "run_train"},
    "lowdim_sd.loading": {"SDModel", "ModelLoadError", "load_sd"},
}


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_resolves_and_the_documented_ones_are_there(name):
    module = importlib.import_module(name)
    assert all(hasattr(module, export) for export in module.__all__)
    assert DOCUMENTED[name] <= set(module.__all__)


def test_every_name_docs_sd_imports_is_exported():
    text = (ROOT / "docs" / "sd.md").read_text()
    for module_name, names in re.findall(r"from (lowdim_sd\.\w+) import ([\w, ]+)", text):
        if module_name in MODULES:
            module = importlib.import_module(module_name)
            assert {n.strip() for n in names.split(",")} <= set(module.__all__), module_name


def test_help_shows_detach_adapters_and_not_the_helpers():
    import lowdim_sd.generate as generate

    text = pydoc.render_doc(generate, renderer=pydoc.plaintext)
    assert "detach_adapters(model" in text
    assert "check_config(" not in text and "drawn_tag(" not in text


def test_load_sd_takes_a_path(tiny_sd):
    from lowdim_sd.loading import load_sd

    assert load_sd(Path(tiny_sd)).name == str(tiny_sd)


def test_load_sd_of_another_type_is_one_line():
    from lowdim_sd.loading import load_sd

    with pytest.raises(LowdimError) as refused:
        load_sd(3)
    assert str(refused.value) == ("load_sd: model= takes a registered name, a hub id or a path (a str or Path), "
                                  "got a int")
