"""A format version of more digits than Python turns into an int (4,300) is still one line naming the file and the
version (FBJ 1): a larger number than this lowdim reads says to upgrade, the same number padded with zeros is one no
lowdim writes, as shorter versions are worded; ``lowdim show`` gives it as the file's problem, not as damage."""

from __future__ import annotations

import json

import pytest
import test_files_from_other_versions
from hypothesis import given
from hypothesis import strategies as st
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.file_fit import format_version_problem
from lowdim.hyper import load_hypernet
from lowdim_cli.main import main
from lowdim_sd.file_info import describe

transformers = pytest.importorskip("transformers")

PAST_INT_LIMIT = 5_000  # digits: int() of more than 4,300 raises ValueError
HUGE_NUMBER = "9" * PAST_INT_LIMIT
ONE_PADDED = "0" * PAST_INT_LIMIT + "1"  # the number this lowdim reads, written as no lowdim writes it
# The adapter and hypernetwork files of the other-versions tests: one LoRA layer, one small LiDB network.
adapter, hypernet = test_files_from_other_versions.adapter, test_files_from_other_versions.hypernet


def test_an_adapter_of_a_version_past_the_int_limit_says_to_upgrade(adapter):
    rewrite(adapter, format_version=HUGE_NUMBER)
    for read in (lowdim.read_adapter, lambda path: lowdim.load_adapter(path, nn.Sequential(nn.Linear(8, 8)))):
        with pytest.raises(AdapterFileError) as refused:
            read(adapter)
        assert str(refused.value) == f"{adapter}: adapter format version {HUGE_NUMBER}; this lowdim reads version " \
                                     f"1: upgrade lowdim"


def test_a_hypernetwork_of_a_version_past_the_int_limit_says_to_upgrade(hypernet):
    rewrite(hypernet, format_version=HUGE_NUMBER)
    with pytest.raises(LowdimError) as refused:
        load_hypernet(hypernet)
    assert str(refused.value) == f"{hypernet}: hypernetwork format version {HUGE_NUMBER}; this lowdim reads " \
                                 f"version 1: upgrade lowdim"


def test_the_version_this_lowdim_reads_padded_past_the_int_limit_is_one_no_lowdim_writes(hypernet):
    rewrite(hypernet, format_version=ONE_PADDED)
    with pytest.raises(LowdimError, match=f"^{hypernet}: hypernetwork format version '0+1', which no lowdim writes"):
        load_hypernet(hypernet)


@pytest.mark.parametrize("path", ["adapter", "hypernet"])
def test_show_gives_a_version_past_the_int_limit_as_the_problem_not_as_damage(path, request, capsys):
    path = rewrite(request.getfixturevalue(path), format_version=HUGE_NUMBER)
    problem = dict(describe(path).rows)["problem"]  # the row is cut (show bounds it); --json keeps it whole
    assert "format version 999" in problem and "damaged" not in problem
    assert main(["show", str(path), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)["fields"]["problem"]
    assert whole.endswith(f"format version {HUGE_NUMBER}; this lowdim reads version 1: upgrade lowdim")


@given(found=st.integers(0, 10**6), padding=st.integers(0, 3), reads=st.integers(1, 10**6))
def test_versions_compare_as_the_numbers_they_write(found, padding, reads):
    text = "0" * padding + str(found)
    said = format_version_problem({"format_version": text}, "adapter", str(reads))
    if text == str(reads):
        assert said == ""
    elif found > reads:
        assert said == f"adapter format version {text}; this lowdim reads version {reads}: upgrade lowdim"
    else:
        assert said.startswith(f"adapter format version {text!r}, which no lowdim writes")
