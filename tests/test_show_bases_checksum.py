"""``lowdim show`` on an adapter whose recorded ``basis_checksum`` the load refuses (an edited seed or checksum, or
bases another lowdim makes otherwise) says so in a "problem" row, in the load's own words, and gives no command to
use it: a user deciding what a file is must not read "use it: ..." for a file every command refuses. Show makes the
bases again as the load does (``lowdim/bases_record.py``), for at most ``BASES_SECONDS``; past that it says it did
not check them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_show_adapter_refusals
from test_basis_checksum_record import edited

import lowdim
import lowdim_sd.adapter_info
from lowdim.errors import AdapterFileError
from lowdim_cli.main import main

REFUSED, toy_model, saved = (test_show_adapter_refusals.REFUSED, test_show_adapter_refusals.toy_model,
                             test_show_adapter_refusals.saved)
OTHER_CHECKSUM = "0123456789abcdef"  # 16 hex digits: a checksum, of other bases


def load_words(path: Path) -> str:
    with pytest.raises(AdapterFileError) as refused:
        lowdim.load_adapter(path, toy_model())
    return str(refused.value).removeprefix(f"{path}: ")


def shown(path: Path, capsys) -> tuple[str, dict]:
    """What `lowdim show PATH` prints, and its --json."""
    assert main(["show", str(path)]) == 0
    table = capsys.readouterr().out
    assert main(["show", str(path), "--json"]) == 0
    return table, json.loads(capsys.readouterr().out)


EDITS = {"seed": {"seed": "12"}, "checksum": {"basis_checksum": OTHER_CHECKSUM},
         "checksum-emptied": {"basis_checksum": ""}, "checksum-removed": {"basis_checksum": None}}


@pytest.mark.parametrize("space", ["lidb", "stack"])  # a stack's frozen LiDB part makes bases from the seed too
@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_a_file_whose_bases_the_load_refuses_shows_the_loads_words_as_its_problem(tmp_path, capsys, space, edit):
    path = edited(saved(tmp_path, space), **edit)
    words = load_words(path)
    assert "checksum" in words
    table, whole = shown(path, capsys)
    assert whole["fields"]["problem"] == f"{words}: {REFUSED}"
    assert whole["use"] == "" and "use it:" not in table
    assert "checksum mismatch" in " ".join(table.split()) or "records no basis_checksum" in " ".join(table.split())


def test_a_lora_file_that_records_a_checksum_shows_the_loads_words(tmp_path, capsys):
    path = edited(saved(tmp_path, "lora"), basis_checksum=OTHER_CHECKSUM)
    words = load_words(path)
    _, whole = shown(path, capsys)
    assert whole["fields"]["problem"] == f"{words}: {REFUSED}" and whole["use"] == ""


def test_a_checksum_that_is_no_checksum_is_named_as_damage(tmp_path, capsys):
    path = edited(saved(tmp_path), basis_checksum="not\nhex")
    words = load_words(path)
    assert "not 16 lowercase hex digits" in words
    table, whole = shown(path, capsys)
    assert whole["fields"]["problem"] == f"{words}: {REFUSED}"
    assert "not\nhex" not in table  # escaped: one line


@pytest.mark.parametrize("space", ["lidb", "stack", "lora"])
def test_a_file_the_load_takes_shows_no_problem_and_its_command(tmp_path, capsys, space):
    path = saved(tmp_path, space)
    lowdim.load_adapter(path, toy_model())
    table, whole = shown(path, capsys)
    assert "problem" not in whole["fields"] and whole["use"].startswith("lowdim generate")
    assert "not checked" not in table


def test_stored_bases_are_exempt_from_the_checksum_as_in_a_load(tmp_path, capsys):
    path = edited(saved(tmp_path, store_bases=True), seed="12", basis_checksum=OTHER_CHECKSUM)
    lowdim.load_adapter(path, toy_model())  # the stored bases are the ones it was trained with
    _, whole = shown(path, capsys)
    assert "problem" not in whole["fields"] and whole["use"].startswith("lowdim generate")


def test_bases_that_take_longer_than_show_spends_are_said_not_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lowdim_sd.adapter_info, "BASES_SECONDS", 0.0)
    path = edited(saved(tmp_path), seed="12")  # a load refuses it; show could not tell in its time
    table, whole = shown(path, capsys)
    fields = whole["fields"]
    assert "problem" not in fields and whole["use"].startswith("lowdim generate")
    assert fields["frozen_bases"] == {"stored": False, "checked": False}
    assert "not checked" in " ".join(table.split())


def test_show_makes_no_basis_past_the_bound_a_reader_without_a_model_keeps(tmp_path, capsys, monkeypatch):
    """A stranger's file stating one 8192-wide layer and bases as wide (2 x 512 MB of float64 and minutes of QR) is
    shown at once: show neither probes nor checks bases past what export would make (``check_regeneration``)."""
    import torch
    from safetensors.torch import save_file

    from lowdim.filecheck import MAX_LAYER_REGENERATED
    from lowdim.layer_lists import pack_layers
    from lowdim.spaces import lidb
    from lowdim.spaces.base import LayerSpec

    made = lidb._bases

    def bounded_bases(out_features: int, in_features: int, a: int, b: int, seed: int):
        if out_features * a + in_features * b > MAX_LAYER_REGENERATED:
            pytest.fail(f"show made bases of {out_features}x{a} and {b}x{in_features} values")
        return made(out_features, in_features, a, b, seed)

    monkeypatch.setattr(lidb, "_bases", bounded_bases)
    wide = 8192
    metadata = {"format": "lowdim.adapter", "format_version": "1", "space": "lidb",
                "space_config": json.dumps({"a": wide, "b": wide, "rank": 1}), "seed": "1",
                "basis_checksum": OTHER_CHECKSUM, "layers": pack_layers([LayerSpec("unet.0", wide, wide)])}
    path = tmp_path / "wide.safetensors"
    save_file({"A_train": torch.zeros(wide), "B_train": torch.zeros(wide)}, str(path), metadata)
    table, whole = shown(path, capsys)
    assert "problem" not in whole["fields"]
    assert whole["fields"]["frozen_bases"] == {"stored": False, "checked": False}
    assert "not checked" in " ".join(table.split())
