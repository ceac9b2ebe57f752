"""Without lowdim-tinyfaces, its model named in another case still says which plugin brings it (not a trip to the
hub under a wrong cause), while a local folder that happens to be called tinyfaces is a folder, not a missing plugin.
(Beside test_missing_plugin_model.py; review X7.)"""

from __future__ import annotations

import pytest

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.loading import load_sd

WITHOUT_TINYFACES = ["lowdim.spaces.builtin", "lowdim_sd.plugin"]


@pytest.fixture
def without_tinyfaces(monkeypatch):
    monkeypatch.delenv("LOWDIM_NO_PLUGINS", raising=False)
    with lowdim.use_registry(lowdim.Registry.from_plugins(WITHOUT_TINYFACES)):
        yield


@pytest.mark.parametrize("model", ["TinyFaces", "TINYFACES"])
def test_another_case_of_the_name_without_its_plugin_names_the_plugin(without_tinyfaces, model):
    with pytest.raises(LowdimError) as refused:
        load_sd(model)
    said = str(refused.value)
    assert said.startswith(f"unknown model '{model}': it comes with the plugin lowdim-tinyfaces"), said
    assert "\n" not in said


def test_a_folder_called_tinyfaces_here_is_that_folder(without_tinyfaces, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tinyfaces").mkdir()  # no model in it: refused as a folder, not as a plugin to install
    with pytest.raises(LowdimError) as refused:
        load_sd("tinyfaces")
    assert "lowdim-tinyfaces" not in str(refused.value) and "not installed" not in str(refused.value)
