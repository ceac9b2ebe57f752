"""`lowdim merge`: adapters folded into the weights, saved as a whole model that needs no adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from merge_adapters import write_two_adapters  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_cli.main import main
from lowdim_sd.generate import GenerateConfig, attach_adapters, generate
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import resolve_layers

CONFIG = GenerateConfig(prompts=["a photo of a face"], seeds=[1], steps=2)


@pytest.fixture(scope="module")
def two_adapters(tiny_sd, tmp_path_factory):
    """Two non-zero adapters of different spaces on the tiny model."""
    return write_two_adapters(tiny_sd, tmp_path_factory.mktemp("adapters"))


def _image(model) -> np.ndarray:
    return np.asarray(generate(model, CONFIG)[0].image, dtype=np.int16)


@pytest.mark.parametrize("fmt, name", [("single-file", "me.safetensors"), ("diffusers", "me")])
def test_merged_model_draws_what_the_model_with_its_adapters_draws(tiny_sd, two_adapters, tmp_path, capsys,
                                                                   one_thread, fmt, name):
    live = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    attach_adapters(live, [(two_adapters[0], 0.7), (two_adapters[1], 1.0)])
    with_adapters = _image(live)
    base = _image(load_sd(str(tiny_sd), device="cpu", dtype="fp32"))
    out = tmp_path / name
    code = main(["merge", "-m", str(tiny_sd), "-a", f"{two_adapters[0]}:0.7", "-a", str(two_adapters[1]),
                 "-o", str(out), "--format", fmt])
    assert code == 0, capsys.readouterr().err
    merged = load_sd(str(out), device="cpu", dtype="fp32", config=str(tiny_sd) if fmt == "single-file" else None)
    assert not any(getattr(m, "is_lowdim_wrapper", False) for m in merged.modules.modules())
    drawn = _image(merged)
    assert np.abs(drawn - base).max() > 10  # the adapters matter...
    assert np.abs(drawn - with_adapters).max() <= 1  # ...and the merged model draws them (8-bit rounding)


def test_merge_and_unload_leaves_plain_modules_with_the_update_in_the_weights(tiny_sd, two_adapters):
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    layer = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    before = model.modules.get_submodule(layer).weight.detach().clone()
    attach_adapters(model, [(two_adapters[1], 0.5)])
    view = lowdim.Adapters(model.modules)
    expected = model.modules.get_submodule(layer).effective_weight().detach().clone()
    view.merge_and_unload([])  # an empty list is no adapter, not every adapter
    assert view.names() == ["a0"]
    view.merge_and_unload()
    module = model.modules.get_submodule(layer)
    assert type(module) is torch.nn.Linear and view.names() == []
    assert torch.allclose(module.weight, expected, atol=1e-6) and not torch.allclose(module.weight, before)


@pytest.mark.parametrize("setup, message", [
    ("folder-exists", "already exists, is not empty and is not an earlier merge"),
    ("not-safetensors", "needs a file name ending in .safetensors (or --format diffusers for a pipeline folder)"),
    ("format", "unknown --format 'ckpt'"),
    ("file-exists", "already exists and is not an earlier merge"),
    ("missing-adapter", "no such adapter file"),
])
def test_bad_input_is_one_line_before_the_model_loads_and_writes_nothing(
        tiny_sd, two_adapters, tmp_path, capsys, monkeypatch, setup, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("lowdim_sd.loading.load_sd", no_loading)
    fmt, out, adapter = "single-file", tmp_path / "me.safetensors", two_adapters[0]
    if setup == "folder-exists":
        fmt, out = "diffusers", tmp_path / "taken"
        (out / "keep.txt").parent.mkdir()
        (out / "keep.txt").write_text("mine")
    elif setup == "not-safetensors":
        out = tmp_path / "me.ckpt"
    elif setup == "file-exists":  # e.g. the base model itself: never overwritten
        out.write_bytes(b"precious")
    elif setup == "missing-adapter":
        adapter = tmp_path / "typo.safetensors"
    else:
        fmt = "ckpt"
    code = main(["merge", "-m", str(tiny_sd), "-a", str(adapter), "-o", str(out), "--format", fmt])
    text = " ".join(capsys.readouterr().err.split())
    assert code == 1 and message in text and "Traceback" not in text
    kept = {"folder-exists": ["keep.txt", "taken"], "file-exists": ["me.safetensors"]}.get(setup, [])
    assert sorted(p.name for p in tmp_path.rglob("*")) == kept
    if setup == "file-exists":
        assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("fmt, name", [("single-file", "me.safetensors"), ("diffusers", "me-model")])
def test_overwrite_replaces_an_earlier_merge_whole(tiny_sd, two_adapters, tmp_path, capsys, fmt, name):
    from safetensors.torch import load_file

    out = tmp_path / name

    def merged(adapter: str, *flags: str) -> int:
        return main(["merge", "-m", str(tiny_sd), "-a", adapter, "-o", str(out), "--format", fmt, *flags])

    def weights() -> dict:
        files = [out] if fmt == "single-file" else sorted(out.rglob("*.safetensors"))
        return {f"{file.name}:{key}": value for file in files for key, value in load_file(file).items()}

    assert merged(str(two_adapters[0])) == 0
    first = weights()
    if fmt == "diffusers":
        (out / "stray.txt").write_text("from before")
    assert merged(f"{two_adapters[0]}:0.5") == 1 and "--overwrite" in capsys.readouterr().err
    if fmt == "diffusers":  # a file the merge did not write would go with the folder: named, never deleted unsaid
        assert merged(f"{two_adapters[0]}:0.5", "--overwrite") == 1
        assert "holds stray.txt, which the earlier merge did not write" in " ".join(capsys.readouterr().err.split())
        assert (out / "stray.txt").read_text() == "from before"
        (out / "stray.txt").unlink()
    assert merged(f"{two_adapters[0]}:0.5", "--overwrite") == 0
    second = weights()
    assert first.keys() == second.keys() and any(not torch.equal(first[k], second[k]) for k in first)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no staging or old copy left


def test_overwrite_never_replaces_the_base_model_itself(tiny_sd, two_adapters, capsys):
    code = main(["merge", "-m", str(tiny_sd), "-a", str(two_adapters[0]), "-o", str(tiny_sd), "--format",
                 "diffusers", "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "is the base model itself" in err[0]


@pytest.mark.parametrize("fmt, name", [("single-file", "me.safetensors"), ("diffusers", "me-model")])
def test_show_names_what_a_merge_was_made_of_and_draws_it_with_generate(tiny_sd, two_adapters, tmp_path, fmt, name):
    from lowdim_sd.file_info import describe

    model = load_sd(str(tiny_sd))
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=3)
    named = lowdim.save_adapter(tmp_path / "zwx.safetensors", model.modules, token="zwx")
    out = tmp_path / name
    code = main(["merge", "-m", str(tiny_sd), "-a", f"{two_adapters[0]}:0.5", "-a", str(named), "-o", str(out),
                 "--format", fmt])
    assert code == 0
    info = describe(out)
    rows = dict(info.rows)
    assert info.kind.startswith("a whole model lowdim merge wrote")
    assert rows["base model"] == str(tiny_sd.resolve()) and rows["token"] == "zwx"
    assert rows["adapters merged"] == f"{two_adapters[0].name} at 0.5, zwx.safetensors at 1.0"
    assert info.use == f"lowdim generate -m {out} -p 'a zwx face'"
    assert load_sd(str(out)).pipe is not None  # the record beside the weights keeps the model loadable


def test_merge_suggests_the_phrase_the_adapter_learned_with_its_token(tiny_sd, tmp_path, capsys):
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    adapter = lowdim.save_adapter(tmp_path / "me.safetensors", view, "default", token="zwx",
                                  extra={"prompt": "a photo of a [V] face", "looks": " with ginger long hair"})
    code = main(["merge", "-m", str(tiny_sd), "-a", str(adapter), "-o", str(tmp_path / "m.safetensors")])
    said = " ".join(capsys.readouterr().out.split())
    assert code == 0, said
    assert "prompts name the subject with its identifier: zwx (e.g. 'a photo of a zwx face with ginger long hair')" \
        in said


def test_one_adapter_given_twice_is_refused_and_a_zero_scale_is_said(tiny_sd, two_adapters, tmp_path, capsys,
                                                                       monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the adapters were checked")

    twice = [str(two_adapters[0]), str(two_adapters[0].parent / "." / two_adapters[0].name) + ":0.5"]
    monkeypatch.setattr("lowdim_sd.loading.load_sd", no_loading)
    for command in (["merge", "-o", str(tmp_path / "m.safetensors")], ["generate", "-p", "a [V] face", "-o",
                                                                         str(tmp_path / "g")]):
        code = main([*command, "-m", str(tiny_sd), "-a", twice[0], "-a", twice[1]])
        err = " ".join(capsys.readouterr().err.split())
        assert code == 1 and "given twice" in err and "sum of the scales" in err, command
        assert f"run {command[0]} once per scale" in err, err  # the command the user ran, not another
    monkeypatch.undo()
    code = main(["generate", "-m", str(tiny_sd), "-a", f"{two_adapters[0]}:0", "-p", "a [V] face", "--steps", "1",
                 "-o", str(tmp_path / "g0")])
    assert code == 0 and "at scale 0 it changes nothing" in " ".join(capsys.readouterr().err.split())
