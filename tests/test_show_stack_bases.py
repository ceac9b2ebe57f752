"""`lowdim show` on a stack whose component pins its own seed (every `personalize` file: LiDB frozen, LoRA on top)
says its frozen bases are made again from the seed, as the file's basis_checksum records; never "none", which
depended on whether the probe's seed reached the component (review DI, finding 3)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import lowdim
from lowdim_cli.main import main

FACE = Path(__file__).resolve().parents[1] / "examples" / "face.png"
REMADE = "made again when loaded (from the seed and the space's config)"


@pytest.fixture(scope="module")
def personalized(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("personalize") / "me"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # --no-preview: the preview (most of a CPU run) is drawn after the file is written and changes nothing in it
        assert main(["personalize", "-m", "tinyfaces", "-i", str(FACE), "--steps", "1", "--no-preview",
                     "-o", str(out)]) == 0
    return out / "adapter.safetensors"


def test_a_personalize_file_is_a_stack_with_a_seeded_component_and_a_basis_checksum(personalized):
    metadata = lowdim.read_adapter(personalized).metadata
    components = json.loads(metadata["space_config"])["components"]
    assert metadata["space"] == "stack" and any("seed" in component for component in components)
    assert metadata["basis_checksum"]  # what the bases are checked against at each load


def test_show_says_its_bases_are_made_again_from_the_seed(personalized, capsys, monkeypatch):
    from lowdim_cli import console

    monkeypatch.setattr(console.out, "_width", 400)  # the table's rows unwrapped (COLUMNS is read only at import)
    assert main(["show", str(personalized)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "frozen bases" in line]
    assert len(rows) == 1 and REMADE in rows[0], rows


def test_show_json_gives_the_bases_as_made_again_not_null(personalized, capsys):
    assert main(["show", "--json", str(personalized)]) == 0
    fields = json.loads(capsys.readouterr().out)["fields"]
    assert fields["frozen_bases"] is not None and fields["frozen_bases"]["stored"] is False, fields
