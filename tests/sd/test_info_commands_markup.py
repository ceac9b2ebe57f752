"""`lowdim inspect`, `lowdim models` and `lowdim spaces` print what a user typed and what a plugin says as text: a
--layers glob with a class of letters ("to_[kq]"), or a plugin's description, summary or layer note that reads as
rich markup ("[b]") or an emoji code (":zap:"), is shown as written, not styled, swallowed or drawn."""

from __future__ import annotations

import pytest
from test_show_models_pipelines_bounded import registered

from lowdim.spaces.lora import LoraSpace
from lowdim_cli.main import main
from lowdim_sd.plugin import SDBackend

pytestmark = pytest.mark.usefixtures("one_thread")

MARKED = "[b]fast[/b] :zap:"


def test_a_layers_glob_with_a_class_and_a_plugins_note_are_printed_as_written(tiny_sd, monkeypatch, capsys):
    monkeypatch.setattr(LoraSpace, "describe", lambda self, layer: f"[b]{layer.name}[/b] :zap:")
    assert main(["inspect", "-m", str(tiny_sd), "-s", "lora", "-l", "unet.*to_[kq]", "--no-files"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("layer set 'unet.*to_[kq]'"), lines[0]
    assert lines[-1].startswith("16 layer notes, e.g. [b]unet.") and lines[-1].endswith("[/b] :zap:"), lines[-1]


def test_a_plugin_models_description_is_listed_as_written(capsys):
    with registered(SDBackend("marked", "", MARKED)):
        assert main(["models"]) == 0
    assert MARKED in capsys.readouterr().out


def test_a_plugin_spaces_summary_is_listed_as_written(monkeypatch, capsys):
    monkeypatch.setattr(LoraSpace, "summary", MARKED)
    assert main(["spaces"]) == 0
    assert MARKED in capsys.readouterr().out
