"""Lines a Textual Inversion or full DreamBooth user meets first (review DY 2, 4, 5, 6): a whole model given as
``-a`` is named a model to draw with ``-m``; CLIP's special tokens are refused as special, not as claimed; a TI
file generate refuses for its token says to train it again, not to pick generate's ``--token``; and ``lowdim show``
of an adapter holding NaN or Inf says what every load says, with no ``use it:`` line that would fail."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors_edit import rewrite

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.generate import check_adapter_files
from lowdim_sd.loading import load_sd
from lowdim_sd.merged_model import save_merged
from lowdim_sd.textual_inversion import EmbeddingError, load_embedding, ti_trainable

REFUSED_BY_EVERY_LOAD = "every command that loads this file refuses it"


def one_line(capsys, *args: object) -> str:
    """The one line a refused command printed (exit 1, no traceback)."""
    capsys.readouterr()
    code = main([str(arg) for arg in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def full_run(tiny_sd, tmp_path_factory):
    """A finished `lowdim train --full` run of the tiny model: its folder, holding model/."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    folder = tmp_path_factory.mktemp("full")
    save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1, folder / "refs", "me")
    assert main(["train", "-m", str(tiny_sd), "-i", str(folder / "refs"), "--steps", "1", "--full",
                 "--out", str(folder / "run")]) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def merged(tiny_sd, lidb_and_ti, tmp_path_factory):
    """A diffusers folder `lowdim merge` wrote from the tiny model and its TI file."""
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    written, _ = save_merged(model, [(lidb_and_ti[1], 1.0)], tmp_path_factory.mktemp("merged") / "m1", "diffusers")
    return written


# --------------------------------------------------------------------------- 2: a whole model given as -a


@pytest.mark.parametrize("scale", ["", ":0.5"])
def test_a_full_run_s_model_given_as_an_adapter_is_named_a_model_to_draw_with_m(full_run, tiny_sd, tmp_path, capsys,
                                                                                scale):
    model = full_run / "model"
    line = one_line(capsys, "generate", "-m", tiny_sd, "-a", f"{model}{scale}", "-p", "a [V] face",
                    "-o", tmp_path / "g")
    assert line == (f"Error: {model}/ is a whole model (`lowdim train --full` wrote it), not an adapter: draw it "
                    f"with -m {model}"), line


def test_a_full_run_s_folder_given_as_an_adapter_names_the_model_inside(full_run, tiny_sd, tmp_path, capsys):
    line = one_line(capsys, "generate", "-m", tiny_sd, "-a", full_run, "-p", "a [V] face", "-o", tmp_path / "g")
    model = full_run / "model"
    assert line == (f"Error: {full_run}/ holds a whole model, {model} (`lowdim train --full` wrote it), not an "
                    f"adapter: draw it with -m {model}"), line


def test_a_merged_folder_given_as_an_adapter_is_named_merge_s_model(merged, tiny_sd, tmp_path, capsys):
    line = one_line(capsys, "generate", "-m", tiny_sd, "-a", merged, "-p", "a [V] face", "-o", tmp_path / "g")
    assert line == (f"Error: {merged}/ is a whole model (`lowdim merge` wrote it), not an adapter: draw it with "
                    f"-m {merged}"), line


@pytest.mark.parametrize("given", ["run", "model"])
def test_a_whole_model_given_to_export_is_named_one_before_any_export_name_is_checked(full_run, given, capsys):
    folder = full_run if given == "run" else full_run / "model"
    line = one_line(capsys, "export", folder)
    assert "whole model" in line and "(`lowdim train --full` wrote it), not an adapter" in line, line


def test_a_whole_model_given_to_merge_as_an_adapter_gets_the_same_line(merged, tiny_sd, tmp_path, capsys):
    line = one_line(capsys, "merge", "-m", tiny_sd, "-a", merged, "-f", "diffusers", "-o", tmp_path / "m2")
    assert line.endswith(f"{merged}/ is a whole model (`lowdim merge` wrote it), not an adapter: draw it with "
                         f"-m {merged}"), line


def test_a_python_caller_is_told_to_load_the_model_as_the_model(full_run):
    model = full_run / "model"
    with pytest.raises(AdapterFileError) as refused:
        check_adapter_files([model])
    assert str(refused.value).endswith(f"not an adapter: load it as the model: load_sd({str(model)!r})")


def test_a_run_folder_holding_an_adapter_beside_a_model_still_names_the_adapter(full_run, lidb_and_ti, tmp_path,
                                                                                 tiny_sd, capsys):
    both = tmp_path / "both"
    shutil.copytree(full_run, both)
    adapter = shutil.copy(lidb_and_ti[0], both / "adapter.safetensors")
    line = one_line(capsys, "generate", "-m", tiny_sd, "-a", both, "-p", "a [V] face", "-o", tmp_path / "g")
    assert line.endswith(f"{both}/ is a folder; its adapter is {adapter}: pass that"), line


def test_a_folder_with_neither_keeps_the_generic_line(tmp_path, tiny_sd, capsys):
    (tmp_path / "empty" / "model").mkdir(parents=True)
    line = one_line(capsys, "generate", "-m", tiny_sd, "-a", tmp_path / "empty", "-p", "x", "-o", tmp_path / "g")
    assert line.endswith(f"{tmp_path / 'empty'}/ is a folder with no lowdim adapter in it; expected a .safetensors "
                         f"adapter file"), line


# --------------------------------------------------------------------------- 4: CLIP's special tokens


@pytest.mark.parametrize("token", ["<|endoftext|>", "<|startoftext|>"])
def test_a_special_token_is_refused_as_special_not_as_claimed(tiny_sd, token):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    with pytest.raises(LowdimError) as refused:
        ti_trainable(model, lowdim.get_space("ti", vectors=1, init_word="face"), token=token)
    assert "is written as a special token of CLIP's tokenizer" in str(refused.value), refused.value
    assert "claimed" not in str(refused.value)


def test_train_with_a_special_token_says_so_in_one_line(tiny_sd, tmp_path, capsys):
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    save_images(torch.rand(1, 3, 32, 32) * 2 - 1, tmp_path / "refs", "me")
    line = one_line(capsys, "train", "-m", tiny_sd, "-i", tmp_path / "refs", "--space", "ti", "--steps", "1",
                    "--token", "<|endoftext|>", "-o", tmp_path / "t")
    assert "'<|endoftext|>' is written as a special token of CLIP's tokenizer" in line, line


def test_a_token_an_earlier_embedding_holds_is_still_claimed(tiny_sd, lidb_and_ti):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    load_embedding(model, lidb_and_ti[1])  # sks
    with pytest.raises(EmbeddingError, match="already claimed by another embedding"):
        ti_trainable(model, lowdim.get_space("ti", vectors=1, init_word="face"), token="sks")


def test_two_files_of_one_token_are_told_to_train_one_again_not_to_pass_generate_s_token(tiny_sd, lidb_and_ti,
                                                                                        tmp_path, capsys):
    twin = shutil.copy(lidb_and_ti[1], tmp_path / "twin.safetensors")  # sks too
    line = one_line(capsys, "generate", "-m", tiny_sd, "-a", lidb_and_ti[1], "-a", twin, "-p", "a [V] face",
                    "--steps", "1", "--device", "cpu", "-o", tmp_path / "g")
    assert "token 'sks' is already claimed by another embedding" in line, line
    assert line.endswith("(draw with one of them, or train one again with another token (lowdim train --token))")


# --------------------------------------------------------------------------- 5: a file's token in the vocabulary


@pytest.fixture
def vocabulary_word_file(lidb_and_ti, tmp_path):
    """The TI file with its token rewritten to 'a', a word of the tiny model's vocabulary (an older lowdim's or
    another tool's file)."""
    return rewrite(shutil.copy(lidb_and_ti[1], tmp_path / "tok-a.safetensors"), token="a")


def test_generate_s_refusal_of_a_file_s_vocabulary_token_says_to_train_it_again(vocabulary_word_file, tiny_sd,
                                                                                tmp_path, capsys):
    line = one_line(capsys, "generate", "-m", tiny_sd, "-a", vocabulary_word_file, "--token", "zzq",
                    "-p", "a [V] face", "--steps", "1", "--device", "cpu", "-o", tmp_path / "g")
    said = f"Error: {vocabulary_word_file}: the identifier 'a' is itself a token of the vocabulary"
    assert line.startswith(said), line
    assert line.endswith("train it again with another token (lowdim train --token)"), line
    assert "choose another --token" not in line


def test_a_python_caller_loading_such_a_file_is_told_trainconfig_s_token(vocabulary_word_file, tiny_sd):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    with pytest.raises(LowdimError) as refused:
        load_embedding(model, vocabulary_word_file)
    assert str(refused.value).endswith("train it again with another token (TrainConfig(token=...))"), refused.value


def test_training_on_a_vocabulary_word_still_says_choose_another_token(tiny_sd, tmp_path, capsys):
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    save_images(torch.rand(1, 3, 32, 32) * 2 - 1, tmp_path / "refs", "me")
    line = one_line(capsys, "train", "-m", tiny_sd, "-i", tmp_path / "refs", "--space", "ti", "--steps", "1",
                    "--token", "a", "-o", tmp_path / "t")
    assert line.endswith("choose another --token"), line


# --------------------------------------------------------------------------- 6: show of non-finite values


def _poisoned(path, tmp_path, name: str, value: float):
    """A copy of ``path`` with one value of its first tensor replaced by ``value``, metadata kept."""
    target = shutil.copy(path, tmp_path / name)
    with safe_open(str(target), framework="pt") as handle:
        key = sorted(handle.keys())[0]
        tensor = handle.get_tensor(key).clone()
    tensor.view(-1)[0] = value
    return rewrite(target, {key: tensor})


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("which", [0, 1], ids=["lidb", "ti"])
def test_show_of_an_adapter_holding_nan_or_inf_names_the_problem_and_suggests_no_command(lidb_and_ti, tmp_path,
                                                                                          capsys, value, which):
    bad = _poisoned(lidb_and_ti[which], tmp_path, "bad.safetensors", value)
    with pytest.raises(AdapterFileError) as loaded:
        lowdim.read_adapter(bad)
    info = describe(bad)
    problem = dict(info.rows).get("problem", "")
    assert problem.startswith(str(loaded.value).removeprefix(f"{bad}: ").removesuffix("; refusing it")), problem
    assert problem.endswith(REFUSED_BY_EVERY_LOAD) and info.use == ""
    capsys.readouterr()
    assert main(["show", str(bad)]) == 0
    assert "use it:" not in capsys.readouterr().out


def test_show_of_a_finite_adapter_keeps_its_use_line(lidb_and_ti):
    info = describe(lidb_and_ti[1])
    assert "problem" not in dict(info.rows) and info.use.startswith("lowdim generate")


def test_show_of_a_stored_basis_holding_nan_names_it_as_the_load_does(tmp_path):
    from torch import nn

    model = nn.Sequential(nn.Linear(8, 8))
    lowdim.inject(model, lowdim.get_space("lidb"), ["0"])
    path = lowdim.save_adapter(tmp_path / "stored.safetensors", model, store_bases=True)
    with safe_open(str(path), framework="pt") as handle:
        key = sorted(name for name in handle.keys() if name.startswith("buffer."))[0]  # noqa: SIM118
        basis = handle.get_tensor(key).clone()
    basis.view(-1)[0] = float("nan")
    rewrite(path, {key: basis})
    with pytest.raises(AdapterFileError) as loaded:
        lowdim.read_adapter(path)
    info = describe(path)
    problem = dict(info.rows).get("problem", "")
    assert "stored basis" in problem and problem.startswith(
        str(loaded.value).removeprefix(f"{path}: ").removesuffix("; refusing it")), problem
    assert info.use == ""
