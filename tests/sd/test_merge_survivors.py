"""`lowdim merge`: what the survivors of review DO's mutation audit showed no test held (FFQ).

Each test names what a user relies on: every adapter at its own scale, a file another run wrote left alone, the
file in the dtype asked for, an earlier merge refused before the model loads, and a merge record whose words are
each a real word, once.
"""

from __future__ import annotations

import json

import pytest
import torch
from merge_adapters import write_two_adapters  # tests/sd, on the path as pytest puts it
from safetensors import safe_open

import lowdim
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd import merged_model
from lowdim_sd.ldm_checkpoint import ldm_state_dict
from lowdim_sd.loading import load_sd


@pytest.fixture(scope="module")
def two_adapters(tiny_sd, tmp_path_factory):
    """A LiDB and a LoRA adapter of the tiny model, each with non-zero values of its own."""
    return write_two_adapters(tiny_sd, tmp_path_factory.mktemp("adapters"))


def _tensors_and_metadata(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}, file.metadata() or {}  # noqa: SIM118 (no __iter__)


def _merged_alone(tiny_sd, adapter=None) -> dict[str, torch.Tensor]:
    """The tiny model's single-file weights with one adapter file folded in at scale 1 (none: the base's)."""
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    if adapter is not None:  # read by the library alone, not by the merge's attaching code under test
        view = lowdim.Adapters(model.modules)
        lowdim.load_adapter(adapter, view, name="alone", scale=1.0)
        view.merge_and_unload()
    return {key: value.detach().clone() for key, value in ldm_state_dict(model.pipe).items()}


def test_each_adapter_is_merged_at_the_scale_typed_after_it_a_negative_one_included(
        tiny_sd, two_adapters, tmp_path, capsys):
    """Survivors d17 (every adapter after the first at scale 1.0) and d18 (a negative scale made positive)."""
    scales = (0.7, -0.5)
    out = tmp_path / "me.safetensors"
    code = main(["merge", "-m", str(tiny_sd), "-a", f"{two_adapters[0]}:{scales[0]}",
                 "-a", f"{two_adapters[1]}:{scales[1]}", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    base = _merged_alone(tiny_sd)
    changes = [{key: value - base[key] for key, value in _merged_alone(tiny_sd, path).items()} for path in two_adapters]
    assert all(any(change[key].abs().max() > 1e-3 for key in base) for change in changes)  # both adapters matter
    merged, _ = _tensors_and_metadata(out)
    assert set(merged) == set(base)
    for key, value in base.items():  # weight-space adapters add their scaled changes
        expected = value + scales[0] * changes[0][key] + scales[1] * changes[1][key]
        torch.testing.assert_close(merged[key], expected, atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("fmt, name", [("single-file", "me.safetensors"), ("diffusers", "me")])
def test_a_model_another_run_wrote_at_out_during_the_merge_is_left_as_it_was(
        tiny_sd, two_adapters, tmp_path, monkeypatch, fmt, name):
    """Survivor d20 (the single file published with replace=True whatever --overwrite says): without --overwrite,
    a model another merge finished at --out after this one's checks is not this one's to replace."""
    out = tmp_path / name

    def another_run_finishes(target) -> None:  # runs after the checks, right before the write
        if fmt == "single-file":
            out.write_bytes(b"their model")
        else:
            out.mkdir()
            (out / "theirs.txt").write_text("their model")

    monkeypatch.setattr(merged_model, "sweep_earlier_debris", another_run_finishes)
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    with pytest.raises(LowdimError, match="written by another run since this merge checked it"):
        merged_model.save_merged(model, [(two_adapters[0], 1.0)], out, fmt=fmt)
    if fmt == "single-file":
        assert out.read_bytes() == b"their model"
    else:
        assert sorted(entry.name for entry in out.iterdir()) == ["theirs.txt"]


@pytest.mark.parametrize("flags, dtype", [((), torch.float32), (("--dtype", "fp16"), torch.float16)])
def test_the_merged_file_holds_its_weights_in_the_dtype_asked_for(tiny_sd, two_adapters, tmp_path, capsys,
                                                                   flags, dtype):
    """Survivors d14 (the file always fp32) and d16 (--dtype not passed on to the load): `--dtype fp16` is how a
    user gets the half-size file the CLI's help promises; no flag keeps fp32, merge's CPU auto."""
    out = tmp_path / "me.safetensors"
    code = main(["merge", "-m", str(tiny_sd), "-a", str(two_adapters[0]), "-o", str(out), *flags])
    assert code == 0, capsys.readouterr().err
    weights, _ = _tensors_and_metadata(out)
    assert {value.dtype for value in weights.values() if value.is_floating_point()} == {dtype}


def test_an_earlier_single_file_merge_without_overwrite_is_refused_before_the_model_loads(
        tiny_sd, two_adapters, tmp_path, capsys, monkeypatch):
    """Survivor d19 (the file guard gone): the refusal came only after the whole merge, as a race with another
    run. The user is told at once that --out is an earlier merge and that --overwrite replaces it."""
    from safetensors.torch import save_file

    from lowdim_sd.ldm_checkpoint import METADATA

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    out = tmp_path / "me.safetensors"
    save_file({"w": torch.zeros(1)}, str(out), metadata={**METADATA, merged_model.RECORD_KEY: json.dumps(
        {"base_model": "x", "adapters": [], "tokens": []})})
    before = out.read_bytes()
    monkeypatch.setattr("lowdim_sd.loading.load_sd", no_loading)
    assert main(["merge", "-m", str(tiny_sd), "-a", str(two_adapters[0]), "-o", str(out)]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert f"{out}: already exists (an earlier merge); pick a new --out or pass --overwrite" in said
    assert "Traceback" not in said and out.read_bytes() == before


def _worded_adapters(tiny_sd, folder, words) -> list:
    """One small LoRA adapter of the tiny model a word (None: saved with no token)."""
    paths = []
    for seed, word in enumerate(words):
        view = lowdim.Adapters(load_sd(str(tiny_sd), device="cpu", dtype="fp32").modules)
        view.add("default", lowdim.get_space("lora"), ["unet.*attn2.to_v"], seed=seed)
        paths.append(lowdim.save_adapter(folder / f"a{seed}.safetensors", view, "default",
                                         **({"token": word} if word else {})))
    return paths


def _recorded_words(tiny_sd, adapters, out, capsys) -> list[str]:
    code = main(["merge", "-m", str(tiny_sd), *[arg for path in adapters for arg in ("-a", str(path))],
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    _, metadata = _tensors_and_metadata(out)
    return json.loads(metadata[merged_model.RECORD_KEY])["tokens"]


def test_an_adapter_saved_without_a_word_adds_no_blank_word_to_the_merge_record(tiny_sd, tmp_path, capsys):
    """Survivor d24 (the blank tokens kept): `lowdim show` would list an empty word to put in prompts."""
    adapters = _worded_adapters(tiny_sd, tmp_path, ("zwx", None))
    assert _recorded_words(tiny_sd, adapters, tmp_path / "me.safetensors", capsys) == ["zwx"]


def test_a_word_two_adapters_share_is_recorded_once(tiny_sd, tmp_path, capsys):
    """Survivor d25 (each adapter's word recorded as it came): the record lists each word to prompt with once."""
    adapters = _worded_adapters(tiny_sd, tmp_path, ("zwx", "qpv", "zwx"))
    assert _recorded_words(tiny_sd, adapters, tmp_path / "me.safetensors", capsys) == ["zwx", "qpv"]
