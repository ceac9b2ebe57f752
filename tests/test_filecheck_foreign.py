"""``describe_foreign``: a file lowdim was handed where a .safetensors goes is named for what it is (a picture,
a text or JSON file, a pickle), whatever its name, instead of safetensors' 'header too large'."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError
from lowdim.foreign_files import describe_foreign

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)


@pytest.mark.parametrize(("content", "said"), [
    (PNG, "a PNG image, not safetensors"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(64), "a JPEG image, not safetensors"),
    (b"GIF89a" + bytes(64), "a GIF image, not safetensors"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(64), "a WebP image, not safetensors"),
    (b"II*\x00" + bytes(64), "a TIFF image, not safetensors"),
    (b'{"prompts": ["a [V] face"]}', "a JSON file, not safetensors"),
    (b'  \n[1, 2, 3]\n', "a JSON file, not safetensors"),
    (b"a [V] face at night\nsks\n", "a text file, not safetensors"),
    ("a [V] face, caf\u00e9 \u00e0 Paris\n".encode(), "a text file, not safetensors"),
    (pickle.dumps({"state_dict": 1}, protocol=4), "a pickle (torch.save / pickle.dump), not safetensors"),
    (b"PK\x03\x04" + bytes(64), "a zip archive (a torch.save pickle checkpoint?), not safetensors"),
], ids=lambda value: value.split(",")[0] if isinstance(value, str) else "")
def test_what_a_file_really_is_whatever_its_name(tmp_path, content, said):
    for name in ("adapter.safetensors", "adapter.bin", "notes"):
        path = tmp_path / name
        path.write_bytes(content)
        assert describe_foreign(path) == said, name


def test_real_and_broken_safetensors_are_left_to_safetensors(tmp_path):
    real = tmp_path / "real.safetensors"
    save_file({"x": torch.zeros(3)}, str(real))
    for path, content in ((tmp_path / "empty.safetensors", b""), (tmp_path / "bytes", bytes(range(256)))):
        path.write_bytes(content)
    for path in (real, tmp_path / "empty.safetensors", tmp_path / "bytes"):
        assert describe_foreign(path) is None, path


def test_a_safetensors_cut_inside_its_header_is_named_cut_short(tmp_path):
    real = tmp_path / "real.safetensors"
    save_file({"x": torch.zeros(3)}, str(real))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(real.read_bytes()[:12])  # an interrupted copy: the header's length, then "{" and a little more
    said = describe_foreign(cut)
    assert said is not None and said.startswith("a .safetensors file cut short (its header alone is ")
    assert said.endswith(" bytes, the file holds 12)")


def test_a_cut_safetensors_starting_80_01_is_not_called_a_pickle(tmp_path):
    # Header length 0x180: its first bytes 80 01 are a pickle opcode's first byte and a protocol no pickle has.
    header = b'{"__metadata__":{"k":"' + b"v" * 330 + b'"}}'
    header += b" " * (0x180 - len(header))
    whole = (0x180).to_bytes(8, "little") + header
    assert whole[:2] == b"\x80\x01"
    path = tmp_path / "cut.safetensors"
    path.write_bytes(whole[:200])
    assert describe_foreign(path) == "a .safetensors file cut short (its header alone is 392 bytes, the file holds 200)"


def test_an_image_as_an_adapter_is_one_line_naming_it(tmp_path):
    preview = tmp_path / "preview.png"
    preview.write_bytes(PNG)
    with pytest.raises(AdapterFileError) as error:
        lowdim.read_adapter(preview)
    assert str(error.value) == f"{preview}: this is a PNG image, not safetensors; lowdim reads .safetensors files only"


def test_an_adapter_is_still_read(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4))
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model)
    assert describe_foreign(path) is None and lowdim.read_adapter(path).layers[0].name == "0"


@pytest.mark.parametrize("keys", [  # LyCORIS 'full' and IA3 files: kohya's layer names, none of LoRA's suffixes
    ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.diff",
     "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.diff_b"],
    ["lora_te_text_model_encoder_layers_0_self_attn_q_proj.weight",
     "lora_te_text_model_encoder_layers_0_self_attn_q_proj.on_input"],
])
def test_a_file_of_kohya_layer_names_is_named_by_its_tool_whatever_its_suffixes(tmp_path, keys):
    """Review CL 1: the name prefix alone tells kohya's layout; the read says where the file belongs."""
    path = tmp_path / "lycoris.safetensors"
    save_file({key: torch.zeros(2, 2) for key in keys}, str(path), metadata={"format": "pt"})
    with pytest.raises(AdapterFileError, match="this is a kohya LoRA, not a lowdim adapter: use it in diffusers"):
        lowdim.read_adapter(path)


def test_only_the_opening_bytes_of_pickle_protocols_2_to_5_are_called_a_pickle(tmp_path):
    """A pickle of protocol 2 to 5 opens with 0x80 and its protocol; 0x80 then any other byte is no pickle (protocols
    0 and 1 open with no 0x80 at all), and calling such a file a torch.save checkpoint would send its user the wrong
    way: it is left to safetensors' own error."""
    path = tmp_path / "adapter.safetensors"
    for second in range(256):
        path.write_bytes(bytes([0x80, second]) + bytes(30))
        pickled = 2 <= second <= 5
        assert describe_foreign(path) == ("a pickle (torch.save / pickle.dump), not safetensors" if pickled else None)
