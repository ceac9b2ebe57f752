"""A first-party plugin's model named where the plugin is not installed says which distribution brings it,
instead of being looked up on the hub as a repository called 'tinyfaces'."""

from __future__ import annotations

import pytest

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.loading import load_sd

WITHOUT_TINYFACES = ["lowdim.spaces.builtin", "lowdim_sd.plugin"]


def test_tinyfaces_without_its_plugin_names_the_plugin(monkeypatch):
    monkeypatch.delenv("LOWDIM_NO_PLUGINS", raising=False)
    with lowdim.use_registry(lowdim.Registry.from_plugins(WITHOUT_TINYFACES)), pytest.raises(LowdimError) as refused:
        load_sd("tinyfaces")
    said = str(refused.value)
    assert said.startswith("unknown model 'tinyfaces': it comes with the plugin lowdim-tinyfaces")
    assert "pip install" in said and "hub" not in said and "\n" not in said


def test_other_bare_words_still_go_their_way(monkeypatch, tmp_path):
    monkeypatch.delenv("LOWDIM_NO_PLUGINS", raising=False)
    with lowdim.use_registry(lowdim.Registry.from_plugins(WITHOUT_TINYFACES)), pytest.raises(LowdimError) as refused:
        load_sd(str(tmp_path / "tinyfaces"))  # a path of that name is a path: no such folder
    assert "lowdim-tinyfaces" not in str(refused.value)


def test_another_spelling_of_an_installed_plugins_model_is_a_typo():
    if "tinyfaces" not in lowdim.get_registry().backends:
        pytest.skip("lowdim-tinyfaces is not installed")
    with pytest.raises(LowdimError) as refused:
        load_sd("TinyFaces")
    assert "did you mean tinyfaces?" in str(refused.value) and "not installed" not in str(refused.value)


def test_with_lowdim_no_plugins_a_folder_here_named_by_a_bare_word_is_that_folder(tiny_sd, tmp_path, monkeypatch,
                                                                                  capsys, one_thread):
    """``cd models; LOWDIM_NO_PLUGINS=1 lowdim generate -m mymodel``: ./mymodel is a model folder, not an unknown
    model name (review CW2 R05)."""
    from lowdim_cli.main import main

    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").symlink_to(tiny_sd, target_is_directory=True)
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin"])):
        code = main(["generate", "-m", "mymodel", "-p", "a face", "--steps", "1", "--device", "cpu", "-o", "img"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert (tmp_path / "img" / "grid.png").is_file()
