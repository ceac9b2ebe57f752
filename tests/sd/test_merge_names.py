"""`lowdim merge`: a diffusers pipeline folder is never named like a single file; two adapters that learned the
same word are warned about before they blend for good; and the record names each adapter apart from the others."""

from __future__ import annotations

import pytest
import torch

import lowdim
from lowdim_cli.main import main
from lowdim_sd.loading import load_sd
from lowdim_sd.merged_model import merge_record


@pytest.fixture(scope="module")
def same_word(tiny_sd, tmp_path_factory):
    """Two adapters in two folders, both named adapter.safetensors, both taught 'sks' (personalize's default)."""
    paths = []
    for index in range(2):
        model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
        adapters = lowdim.inject(model.modules, lowdim.get_space("lora"), ["*attn1.to_q"], seed=index)
        with torch.no_grad():
            for param in adapters.parameters():
                param.normal_(0.0, 0.1)
        folder = tmp_path_factory.mktemp(f"me{index}")
        paths.append(lowdim.save_adapter(folder / "adapter.safetensors", model.modules, token="sks"))
    return paths


@pytest.mark.parametrize("name", ["m.safetensors", "m.SAFETENSORS", "m.ckpt"])
def test_a_diffusers_folder_named_like_a_single_file_is_one_line_and_writes_nothing(tiny_sd, same_word, tmp_path,
                                                                                     capsys, name):
    code = main(["merge", "-m", str(tiny_sd), "-a", str(same_word[0]), "-o", str(tmp_path / name), "-f", "diffusers"])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "a diffusers pipeline is a folder" in said and "--format single-file" in said, said
    assert not (tmp_path / name).exists()


def test_two_adapters_that_learned_the_same_word_are_warned_about(tiny_sd, same_word, tmp_path, capsys, one_thread):
    out = tmp_path / "two.safetensors"
    code = main(["merge", "-m", str(tiny_sd), "-a", f"{same_word[0]}:0.5", "-a", str(same_word[1]), "-o", str(out)])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 0 and "2 adapters learned the word 'sks': merged, their subjects blend into one for good" in said
    code = main(["merge", "-m", str(out), "-a", str(same_word[0]), "-o", str(tmp_path / "three.safetensors")])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 0 and "an adapter and the merged model it goes into both learned the word 'sks'" in said


def test_adapters_of_one_file_name_are_recorded_by_enough_of_their_path_to_tell_them_apart(tmp_path):
    paths = [tmp_path / "alice" / "adapter.safetensors", tmp_path / "bob" / "adapter.safetensors",
             tmp_path / "solo.safetensors"]
    record = merge_record("tinyfaces", [(paths[0], 0.5), (paths[1], 1.0), (paths[2], 1.0)], ["sks"])
    assert [entry["file"] for entry in record["adapters"]] == ["alice/adapter.safetensors",
                                                               "bob/adapter.safetensors", "solo.safetensors"]
    assert [entry["scale"] for entry in record["adapters"]] == [0.5, 1.0, 1.0]  # each at the scale it went in at


def test_a_model_that_already_carries_an_adapter_is_refused_before_anything_is_written(tiny_sd, same_word, tmp_path):
    from lowdim.errors import LowdimError
    from lowdim_sd.merged_model import save_merged

    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    lowdim.load_adapter(same_word[1], model.modules, name="left")
    with pytest.raises(LowdimError, match=r"already carries adapter\(s\) left, which the merge would fold in"):
        save_merged(model, [(same_word[0], 1.0)], tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists() and lowdim.Adapters(model.modules).names() == ["left"]
