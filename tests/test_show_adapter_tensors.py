"""``lowdim show`` on an adapter file whose tensors every load refuses (a stray param, a stored basis missing or of
the wrong size) says so in the load's own words, and a long or hostile ``token`` / ``base_model`` is printed bounded
and escaped: a user deciding what a stranger's file is must not read "use it: ..." for a file that will not load,
nor scroll past 100 KB of one value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_show_adapter_refusals
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import lowdim
from lowdim.errors import AdapterFileError
from lowdim_cli.main import main
from lowdim_sd.file_info import describe

REFUSED, toy_model, saved = (test_show_adapter_refusals.REFUSED, test_show_adapter_refusals.toy_model,
                             test_show_adapter_refusals.saved)


def edited(path: Path, change, **metadata: str) -> Path:
    """The file with its tensors changed by ``change`` (a dict edited in place) and some metadata replaced."""
    with safe_open(str(path), framework="pt") as handle:
        meta = {**handle.metadata(), **metadata}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
    change(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_words(path: Path) -> str:
    with pytest.raises(AdapterFileError) as refused:
        lowdim.load_adapter(path, toy_model())
    return str(refused.value).removeprefix(f"{path}: ")


def assert_show_says_the_load_refuses(path: Path) -> str:
    words = load_words(path)
    info = describe(path)
    assert dict(info.rows)["problem"] == f"{words}: {REFUSED}"
    assert info.use == ""
    return words


@pytest.mark.parametrize("space", ["lidb", "lora"])
@pytest.mark.parametrize("stray", ["bogus", "unet.0/bogus"])
def test_a_stray_param_tensor_is_named_as_the_load_names_it(tmp_path, space, stray):
    path = edited(saved(tmp_path, space), lambda tensors: tensors.update({stray: torch.zeros(4)}))
    words = assert_show_says_the_load_refuses(path)
    assert words == f"unexpected tensor '{stray}': it is not a param of space '{space}'"


def drop(key: str):
    return lambda tensors: tensors.pop(key)


def resize(key: str, by: int):
    def change(tensors: dict) -> None:
        tensors[key] = tensors[key][:by] if by < 0 else torch.cat([tensors[key], torch.zeros(by)])
    return change


def folded(key: str):
    return lambda tensors: tensors.update({key: tensors[key].reshape(2, -1)})


@pytest.mark.parametrize(("change", "said"), [
    (drop("buffer.A_aux"), "tensor 'buffer.A_aux' is missing"),
    (drop("buffer.B_aux"), "tensor 'buffer.B_aux' is missing"),
    (resize("buffer.A_aux", -3), "tensor 'buffer.A_aux' is too short for layer unet.2"),
    (resize("buffer.B_aux", 5), "tensor(s) buffer.B_aux hold more values than the layers need"),
    (folded("buffer.A_aux"), "tensor 'buffer.A_aux' is 2-D (2, 320)"),
], ids=["A-missing", "B-missing", "short", "long", "2-D"])
def test_a_missing_or_wrong_sized_stored_basis_is_named_as_the_load_names_it(tmp_path, change, said):
    path = edited(saved(tmp_path, store_bases=True), change)
    assert assert_show_says_the_load_refuses(path).startswith(said)


@pytest.mark.parametrize(("change", "said"), [
    (drop("A_train"), "tensor 'A_train' is missing"),
    (resize("B_train", -1), "tensor 'B_train' is too short for layer unet.2"),
    (resize("A_train", 2), "tensor(s) A_train hold more values than the layers need"),
], ids=["missing", "short", "long"])
def test_a_missing_or_wrong_sized_param_is_named_as_the_load_names_it(tmp_path, change, said):
    path = edited(saved(tmp_path), change)
    assert assert_show_says_the_load_refuses(path) == said


HUGE = 100_000


@pytest.mark.parametrize("field", ["token", "base_model"])
def test_a_huge_printable_value_is_one_bounded_line_with_its_length(tmp_path, field, capsys):
    value = "x" * HUGE
    path = edited(saved(tmp_path), lambda tensors: None, **{field: value})
    lowdim.load_adapter(path, toy_model())  # a load takes it: shown as a file that loads, its value cut
    info = describe(path)
    shown = dict(info.rows)[field.replace("_", " ")]
    assert len(shown) <= 160 and shown.startswith("'xxx") and f"({HUGE:,} characters)" in shown
    assert value not in info.use  # the command names no 100 KB model
    assert main(["show", str(path)]) == 0
    assert len(capsys.readouterr().out) < 5_000
    assert main(["show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"][field] == value  # programs: the text, under its key


def test_short_real_values_are_shown_exactly_as_they_are(tmp_path):
    path = saved(tmp_path, base_model="runwayml/stable-diffusion-v1-5", token="<sks>")
    info = describe(path)
    rows = dict(info.rows)
    assert rows["base model"] == "runwayml/stable-diffusion-v1-5" and rows["token"] == "<sks>"
    assert info.use.startswith("lowdim generate -m runwayml/stable-diffusion-v1-5 -a ")


def test_a_base_model_with_an_escape_sequence_stays_out_of_the_use_line(tmp_path, capsys):
    path = edited(saved(tmp_path), lambda tensors: None, base_model="\x1b[31mred")
    info = describe(path)
    assert dict(info.rows)["base model"] == r"'\x1b[31mred'"
    assert "\x1b" not in info.use and info.use.startswith("lowdim generate -m MODEL -a ")
    assert main(["show", str(path)]) == 0
    assert "\x1b" not in capsys.readouterr().out
