"""``lowdim show`` on an adapter file (review FAL's leftovers): a tensor stored as integers, which every load refuses,
is named as the load names it, from the header alone; and a long recipe text (a stranger's 100 KB ``prompt`` or
``looks``) is one bounded row, with ``--json`` keeping the text and the ``use it:`` line still a command to copy."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from safetensors_edit import rewrite
from test_show_adapter_tensors import REFUSED, edited, load_words, saved

from lowdim_cli.main import main
from lowdim_sd.file_info import describe

HUGE = 100_000


def as_dtype(key: str, dtype: torch.dtype):
    return lambda tensors: tensors.update({key: tensors[key].to(dtype)})


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.float8_e4m3fn],
                         ids=str)
@pytest.mark.parametrize("key", ["A_train", "buffer.A_aux"])
def test_a_tensor_stored_as_no_float_is_named_as_the_load_names_it(tmp_path, dtype, key):
    path = edited(saved(tmp_path, store_bases=True), as_dtype(key, dtype))
    words = load_words(path)
    assert words == f"tensor '{key}' holds {str(dtype).removeprefix('torch.')}, not floats"
    info = describe(path)
    assert dict(info.rows)["problem"] == f"{words}: {REFUSED}"
    assert info.use == ""


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_float_file_of_any_width_still_loads_and_shows_no_problem(tmp_path, dtype):
    path = edited(saved(tmp_path), lambda tensors: tensors.update({k: v.to(dtype) for k, v in tensors.items()}))
    info = describe(path)
    assert "problem" not in dict(info.rows) and info.use.startswith("lowdim generate ")


def with_raw_tensor(path: Path, key: str, dtype: str, shape: list[int], data: bytes) -> Path:
    """The file with tensor ``key`` replaced by raw ``data`` of a dtype safetensors names (the header written by
    hand: torch cannot make a tensor of every such dtype)."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    body = raw[8 + length:]
    tensors = {name: body[slice(*entry["data_offsets"])] for name, entry in header.items() if name != "__metadata__"}
    tensors[key] = data
    out, offset = {"__metadata__": header["__metadata__"]}, 0
    for name, blob in tensors.items():
        entry = header[name] if name != key else {"dtype": dtype, "shape": shape}
        out[name] = {"dtype": entry["dtype"], "shape": entry["shape"], "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
    text = json.dumps(out).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(tensors.values()))
    return path


def test_a_dtype_torch_cannot_read_is_a_problem_row_saying_so(tmp_path, capsys):
    """safetensors names dtypes torch has no tensor for (F6_E2M3): every load fails to read the file at all, in
    safetensors' words, which show cannot have without reading the tensor."""
    path = with_raw_tensor(saved(tmp_path), "A_train", "F6_E2M3", [8], bytes(6))
    load_words(path)  # refused
    info = describe(path)
    assert dict(info.rows)["problem"] == f"tensor 'A_train' holds F6_E2M3, which torch cannot read: {REFUSED}"
    assert main(["show", str(path)]) == 0 and "Traceback" not in capsys.readouterr().out


def recipe_file(tmp_path: Path, **recipe: object) -> Path:
    return saved(tmp_path, base_model="tinyfaces", token="<sks>", extra=recipe)


@pytest.mark.parametrize("field", ["prompt", "looks"])
def test_a_huge_recipe_text_is_one_bounded_row_and_json_keeps_it(tmp_path, field, capsys):
    value = "a [V] face " + "x" * HUGE if field == "prompt" else " with " + "x" * HUGE
    path = recipe_file(tmp_path, **{field: value}, steps=40)
    info = describe(path)
    shown = dict(info.rows)[f"recipe: {field}"]
    assert len(shown) <= 160 and f"({len(value.strip()):,} characters)" in shown
    assert dict(info.rows)["recipe: steps"] == "40"  # short values stay as they are
    assert "xxxxxxxxxx" * 30 not in info.use
    assert main(["show", str(path)]) == 0
    assert len(capsys.readouterr().out) < 5_000
    assert main(["show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"]["recipe"][field] == value.strip()


def test_a_prompt_the_table_cannot_show_as_it_is_is_a_placeholder_in_the_use_line(tmp_path):
    for prompt in ("a [V] face " + "x" * HUGE, "a [V] face \x1b[31mred"):
        path = recipe_file(tmp_path, prompt=prompt)
        words = shlex.split(describe(path).use)
        assert words[-2:] == ["-p", "PROMPT"] and words[:4] == ["lowdim", "generate", "-m", "tinyfaces"]


def test_a_short_recipe_prompt_and_looks_stay_in_the_use_line_as_they_are(tmp_path):
    path = recipe_file(tmp_path, prompt="a [V] face at night", looks=" with ginger long hair")
    info = describe(path)
    assert dict(info.rows)["recipe: looks"] == "with ginger long hair"
    assert shlex.split(info.use)[-2:] == ["-p", "a [V] face with ginger long hair at night"]


def test_a_long_space_config_or_layer_set_is_cut_and_json_keeps_it(tmp_path):
    config = json.dumps({"a": 8, "b": 8, "init": "x" * HUGE})
    path = rewrite(saved(tmp_path), space_config=config, layer_set="y" * HUGE)
    info = describe(path)
    rows = dict(info.rows)
    assert rows["space"].startswith("lidb ") and len(rows["space"]) <= 200 and "characters)" in rows["space"]
    assert len(rows["layers"]) <= 200 and f"({HUGE:,} characters)" in rows["layers"]
    fields = info.as_dict()["fields"]
    assert fields["space"]["config"]["init"] == "x" * HUGE and fields["layers"]["set"] == "y" * HUGE
