"""``lowdim export -o``: every format writes one .safetensors file, so anything else given as -o (a folder, a
name ending in a slash, another suffix) is one line before anything is written; a file that is not an
adapter at all (a picture, a text file) is named for what it is."""

from __future__ import annotations

import os

import pytest
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.export import ExportError, export_adapter

pytestmark = pytest.mark.usefixtures("one_thread")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)  # what a preview.png opens with


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def lora(tmp_path):
    """A LoRA adapter on one UNet layer (the text encoder's would not warn about ComfyUI), of SD's own: a kohya export
    of a top-level ``unet.to_q`` is refused, diffusers loading it onto no module."""
    model = nn.ModuleDict({"unet": nn.ModuleDict({"time_embedding": nn.ModuleDict({"linear_1": nn.Linear(4, 4)})})})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.time_embedding.linear_1"])
    (tmp_path / "me").mkdir()
    return lowdim.save_adapter(tmp_path / "me" / "adapter.safetensors", model, token="zwx")


@pytest.fixture
def embedding(tmp_path):
    """A Textual Inversion adapter: it exports as an embedding file (diffusers or a1111), not a LoRA."""
    encoder = nn.Module()
    encoder.embeddings = nn.Module()
    encoder.embeddings.token_embedding = nn.Embedding(10, 4)
    model = nn.ModuleDict({"text_encoder": encoder})
    targets = lowdim.LayerSet("e", ("text_encoder.embeddings.token_embedding",), types=("embedding",))
    lowdim.inject(model, lowdim.get_space("ti"), targets)
    return lowdim.save_adapter(tmp_path / "ti.safetensors", model, token="zz")


FORMATS = [("lora", "kohya"), ("lora", "diffusers"), ("embedding", "diffusers"), ("embedding", "a1111")]


def _only_error(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("Warning:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _refusals(capsys, adapter, fmt: str, outs) -> list[str]:
    """The one error line of `export -o OUT` for each OUT, each refused with status 1 and nothing printed."""
    lines = []
    for out in outs:
        code, printed, err = run(capsys, "export", adapter, "-f", fmt, "-o", out)
        assert code == 1 and not printed, (out, printed)
        lines.append(_only_error(err))
    return lines


@pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")
@pytest.mark.parametrize(("source", "fmt"), FORMATS)
def test_an_out_that_names_no_safetensors_file_is_one_line_and_writes_nothing(request, tmp_path, monkeypatch, capsys,
                                                                              source, fmt):
    adapter = request.getfixturevalue(source)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").mkdir()
    before = sorted(os.listdir(tmp_path))
    folders = ("newd/", "existing", "existing/", "newd.safetensors/", f"{tmp_path}/newd/")
    for out, line in zip(folders, _refusals(capsys, adapter, fmt, folders), strict=True):
        assert line.startswith(f"Error: {out}: ") and "folder" in line, (out, line)
    names = ("lora.txt", "lora", "lora.ckpt", "lora.safetensors.bak")
    for out, line in zip(names, _refusals(capsys, adapter, fmt, names), strict=True):
        assert line.startswith(f"Error: {out}: not a .safetensors name"), (out, line)
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, no file 'newd'
    assert not any((tmp_path / "existing").iterdir())
    for out in ("lora.txt", "lora.safetensors.bak"):  # the name to give instead
        assert _only_error(run(capsys, "export", adapter, "-f", fmt, "-o", out)[2]).endswith("e.g. lora.safetensors")


@pytest.mark.parametrize(("source", "fmt"), FORMATS)
def test_a_safetensors_name_in_a_new_folder_is_written(request, tmp_path, monkeypatch, capsys, source, fmt):
    adapter = request.getfixturevalue(source)
    monkeypatch.chdir(tmp_path)
    code, printed, _ = run(capsys, "export", adapter, "-f", fmt, "-o", "new/Lora.SafeTensors")
    assert code == 0 and "wrote new/Lora.SafeTensors" in printed and (tmp_path / "new" / "Lora.SafeTensors").is_file()
    code, printed, _ = run(capsys, "export", adapter, "-f", fmt)  # the default name sits beside the adapter
    assert code == 0 and f"{adapter.stem}.{fmt}.safetensors" in printed


def test_the_library_refuses_the_same_outs(lora, tmp_path):
    (tmp_path / "existing").mkdir()
    for out in (f"{tmp_path}/newd/", tmp_path / "existing", tmp_path / "lora.txt"):
        with pytest.raises(ExportError, match=f"^{tmp_path}") as error:
            export_adapter(lora, out, "kohya")
        assert "\n" not in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["existing", "me"]


def test_the_comfyui_warning_names_the_path_given(lora, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "export", lora, "-f", "diffusers", "-o", "sub/x.safetensors")
    assert code == 0 and any(line.startswith("Warning: sub/x.safetensors: ComfyUI") for line in err.splitlines()), err


@pytest.mark.parametrize(("name", "content", "said"), [
    ("preview.png", PNG, "a PNG image"),
    ("photo.jpg", b"\xff\xd8\xff\xe0" + bytes(64), "a JPEG image"),
    ("prompts.json", b'{"prompts": ["a [V] face"]}\n', "a JSON file"),
    ("notes.txt", b"my adapter, trained on 3 photos\n", "a text file"),
    ("renamed.safetensors", PNG, "a PNG image"),
], ids=lambda value: value if isinstance(value, str) and "." in value else "")
def test_an_image_or_text_passed_as_the_adapter_is_named_for_what_it_is(tmp_path, capsys, name, content, said):
    path = tmp_path / name
    path.write_bytes(content)
    for args in (["export", path], ["merge", "-m", "tinyfaces", "-a", path, "-o", tmp_path / "m.safetensors"]):
        code, _, err = run(capsys, *args)
        line = _only_error(err)
        assert code == 1 and f"{path}: this is {said}, not safetensors" in line, line
        assert "header too large" not in line and "truncated or corrupted" not in line
    assert sorted(os.listdir(tmp_path)) == [name]


@pytest.mark.parametrize("flag", ["--save-dtype", "--dtype"])
def test_the_file_dtype_is_set_by_save_dtype_as_in_personalize_and_by_its_old_name(lora, tmp_path, capsys, flag):
    from safetensors.torch import load_file

    out = tmp_path / "me.fp32.safetensors"
    code, _, err = run(capsys, "export", lora, "--format", "kohya", "-o", out, flag, "fp32")
    assert code == 0, err
    assert {str(v.dtype) for k, v in load_file(out).items() if not k.endswith(".alpha")} == {"torch.float32"}
    code, _, err = run(capsys, "export", lora, "-o", tmp_path / "x.safetensors", flag, "int8")
    assert code == 1 and "(--save-dtype) must be one of" in err and "int8" in err
