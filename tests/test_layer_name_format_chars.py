"""Layer names with invisible Unicode format characters (category Cf) are refused as control characters are.

A bidi override (U+202E), an isolate (U+2066-2069), a zero-width space (U+200B) or a BOM makes a name print as
another one in `lowdim show` and in every error, so a file could claim one layer and show another. No torch or
diffusers module name holds one: attribute names are Python identifiers, which take no Cf character, and lowdim's
own ModuleDict keys are plain words. Every other name torch takes still loads.
"""

from __future__ import annotations

import base64
import json
import sys
import unicodedata
import zlib

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.filecheck import layer_name_problem

FORMAT_CHARS = ["\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b", "\u200d", "\ufeff", "\u00ad"]


def test_no_python_identifier_holds_a_format_character():
    """Why refusing them costs no real model: every Cf code point is refused inside an identifier."""
    format_chars = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert not [c for c in format_chars if ("a" + c + "b").isidentifier()]


@pytest.mark.parametrize("char", FORMAT_CHARS, ids=[f"U+{ord(c):04X}" for c in FORMAT_CHARS])
def test_a_name_with_a_format_character_is_refused_naming_the_code_point(char):
    problem = layer_name_problem(f"unet.to_q{char}v")
    assert problem is not None and f"U+{ord(char):04X}" in problem


@pytest.mark.parametrize("name", ["unet.down_blocks.0.attentions.0.to_q", "blocks.to q", "blocks.café", "层.0",
                                  "blocks.attn:v"])
def test_names_torch_takes_still_pass(name):
    assert layer_name_problem(name) is None


def test_a_file_whose_layer_name_holds_a_bidi_override_is_refused_in_one_escaped_line(tmp_path):
    torch.manual_seed(0)
    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(8, 8))})
    lowdim.inject(model, lowdim.get_space("lora"), ["unet.0"], seed=1)
    path = lowdim.save_adapter(tmp_path / "a.safetensors", model)
    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
    shown_as = "unet.0\u202eexe.txt"  # prints as "unet.0txt.exe"
    meta["layers"] = "zlib:" + base64.b64encode(zlib.compress(json.dumps([[shown_as, 8, 8]]).encode())).decode()
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(path)
    line = str(refused.value)
    assert line.startswith(f"{path}: layer name 'unet.0\\u202eexe.txt' in the metadata")
    assert "U+202E" in line and "\u202e" not in line and "\n" not in line


def test_inject_refuses_a_module_named_with_one_before_any_training():
    model = nn.ModuleDict({"to_q\u200b": nn.Linear(4, 4), "fine": nn.Linear(4, 4)})
    with pytest.raises(LowdimError, match=r"layer 'to_q\\u200b': its name holds .*U\+200B"):
        lowdim.inject(model, lowdim.get_space("lora"), "*", seed=0)
