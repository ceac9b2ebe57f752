"""A weight index whose ``format_version`` is a JSON number of more digits than Python turns into an int (4,300):
``json.loads`` fails on it, but it is still a version, newer than this lowdim's, and is refused as a newer one is:
one line naming the folder that says to upgrade (as the same number written as a string already is), wherever the
index is read. Such a number anywhere else leaves the index unreadable, as before."""

from __future__ import annotations

import json

import pytest
from test_weight_index_versions import header, weight_folder  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.weight_index import read_index

pytestmark = pytest.mark.usefixtures("one_thread")

PAST_INT_LIMIT = 5_000  # digits: int() of more than 4,300 raises ValueError, and json.loads with it
HUGE = "9" * PAST_INT_LIMIT
PLACE = "__number__"


def with_number(path, number: str) -> None:
    """``path``'s JSON with the string PLACE written as the bare JSON number ``number`` (json.dumps cannot)."""
    path.write_text(path.read_text().replace(json.dumps(PLACE), number))


def upgrade_line(folder) -> str:
    return f"{folder}: weight index format version {HUGE}; this lowdim reads version 1: upgrade lowdim"


def test_an_index_of_a_version_number_past_the_int_limit_says_to_upgrade(tmp_path):
    weight_folder(tmp_path / "w", format_version=PLACE)
    with_number(tmp_path / "w" / "index.json", HUGE)
    with pytest.raises(LowdimError) as refused:
        read_index(tmp_path / "w")
    assert str(refused.value) == upgrade_line(tmp_path / "w")


def test_a_part_of_a_version_number_past_the_int_limit_says_to_upgrade(tmp_path):
    weight_folder(tmp_path / "w", format_version="1")
    part = tmp_path / "w" / "index-p1.json"
    part.write_text(json.dumps({**header(tmp_path / "ids", {"steps": 1}, format_version=PLACE), "identities": []}))
    with_number(part, HUGE)
    with pytest.raises(LowdimError) as refused:
        read_index(tmp_path / "w")
    assert str(refused.value) == upgrade_line(tmp_path / "w")


def test_a_newer_version_is_said_before_any_other_number_past_the_limit(tmp_path):
    weight_folder(tmp_path / "w", format_version=PLACE, seed=PLACE)  # a newer lowdim may write numbers this can't
    with_number(tmp_path / "w" / "index.json", HUGE)
    with pytest.raises(LowdimError) as refused:
        read_index(tmp_path / "w")
    assert str(refused.value) == upgrade_line(tmp_path / "w")


def test_a_negative_version_past_the_int_limit_is_one_no_lowdim_writes(tmp_path):
    weight_folder(tmp_path / "w", format_version=PLACE)
    with_number(tmp_path / "w" / "index.json", f"-{HUGE}")
    with pytest.raises(LowdimError, match=f"^{tmp_path / 'w'}: weight index format version '-9+', which no lowdim "
                                          f"writes .*this lowdim reads version 1$"):
        read_index(tmp_path / "w")


@pytest.mark.parametrize("version", [1, "1"])
def test_another_number_past_the_int_limit_leaves_the_index_unreadable(tmp_path, version):
    weight_folder(tmp_path / "w", format_version=version, resolution=PLACE)
    index = tmp_path / "w" / "index.json"
    with_number(index, HUGE)
    with pytest.raises(LowdimError, match=f"^{index}: unreadable weight index") as refused:
        read_index(tmp_path / "w")
    assert "upgrade" not in str(refused.value)


def test_show_train_hypernet_and_precompute_say_to_upgrade_in_one_line(tiny_sd, people, tmp_path, capsys):
    out = tmp_path / "w"
    weight_folder(out, format_version=PLACE)
    with_number(out / "index.json", HUGE)
    before = (out / "index.json").read_text()
    for command in (["show", out], ["train-hypernet", "-w", out, "-o", tmp_path / "hyp", "--steps", 1],
                    ["precompute", "-m", tiny_sd, "-i", people, "-o", out, "--steps", 1, "--no-crop", "--device",
                     "cpu"]):
        assert main([str(word) for word in command]) == 1, command
        said = capsys.readouterr().err.strip().splitlines()
        assert said == [f"Error: {upgrade_line(out)}"], said
    assert (out / "index.json").read_text() == before
