"""``folder_line`` with what a backend knows of a folder holding no file of the format (a whole model it wrote):
that line instead of the generic one, and never in place of naming a file the folder does hold."""

from __future__ import annotations

from pathlib import Path

from torch import nn

import lowdim
from lowdim.file_loading import FORMAT
from lowdim.given_folder import folder_line

ELSEWHERE = "me/ is a whole model: draw it with -m me"


def adapter_in(folder: Path) -> Path:
    model = nn.Sequential(nn.Linear(4, 4))
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    folder.mkdir(exist_ok=True)
    return lowdim.save_adapter(folder / "adapter.safetensors", model)


def test_a_folder_holding_none_gets_the_backend_s_line(tmp_path):
    (tmp_path / "me").mkdir()
    assert folder_line(tmp_path / "me", FORMAT, "adapter", what_else=ELSEWHERE) == ELSEWHERE


def test_without_one_the_generic_line_stays(tmp_path):
    (tmp_path / "me").mkdir()
    assert folder_line(tmp_path / "me", FORMAT, "adapter").endswith("is a folder with no lowdim adapter in it; "
                                                                    "expected a .safetensors adapter file")


def test_a_file_the_folder_holds_is_named_before_what_else_it_is(tmp_path):
    adapter = adapter_in(tmp_path / "me")
    line = folder_line(tmp_path / "me", FORMAT, "adapter", ":0.5", what_else=ELSEWHERE)
    assert line == f"{tmp_path / 'me'}/ is a folder; its adapter is {adapter}: pass {adapter}:0.5"
