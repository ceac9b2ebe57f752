"""personalize --describe: a backend's describer reads the looks once, and they go after "[V] <noun>" in the
preview prompts, in --keep-styles' style prompts, in the adapter's recipe and in the bench rows that ask."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open

from lowdim.errors import LowdimError
from lowdim.registry import Entry, get_registry
from lowdim_cli.main import main
from lowdim_sd.generate import with_looks
from lowdim_sd.loading import load_sd
from lowdim_sd.personalize import PersonalizeJob, finetune_config, personalize
from lowdim_sd.personalize_resolve import resolve_run
from lowdim_sd.plugin import SDBackend

LOOKS = " with ginger long hair"


@pytest.fixture
def described(tiny_sd, monkeypatch):
    """A registered model on the tiny pipeline whose describer records each image it reads."""
    seen: list[torch.Tensor] = []

    def describer(image: torch.Tensor) -> str:
        seen.append(image.clone())
        return LOOKS

    prompts = ("a photo of a [V] face", "a [V] face at night")
    backend = SDBackend("tiny-described", str(tiny_sd), preview_prompts=prompts, describe_subject=describer)
    monkeypatch.setitem(get_registry().backends, backend.name, Entry(backend.name, backend, "test"))
    return seen


def job(model: str, face, out, **kwargs) -> PersonalizeJob:
    return PersonalizeJob(model=model, image=face, out=out, steps=kwargs.pop("steps", 1), crop=False,
                          preview_steps=1, **kwargs)


@given(before=st.sampled_from(["a photo of a", "a pencil sketch of a", "a"]), noun=st.sampled_from(["face", "person"]),
       after=st.sampled_from(["", " at night", " wearing a hat"]), looks=st.sampled_from([LOOKS, " with a bald head"]))
def test_the_looks_go_right_after_the_identifiers_noun(before, noun, after, looks):
    assert with_looks(f"{before} [V] {noun}{after}", looks) == f"{before} [V] {noun}{looks}{after}"
    assert with_looks(f"{before} [V] {noun}{after}", "") == f"{before} [V] {noun}{after}"


def test_a_prompt_without_the_identifier_is_left_alone_and_a_bare_one_gets_them_after_it():
    assert with_looks("a face at night", LOOKS) == "a face at night"
    assert with_looks("[V]", LOOKS) == "[V]" + LOOKS


def test_personalize_reads_the_looks_once_and_names_them_in_the_preview_and_the_file(described, face, tmp_path):
    result = personalize(job("tiny-described", face, tmp_path / "a"), progress=False)
    assert len(described) == 1 and described[0].shape == (3, 16, 16)  # the reference, at the model's size
    assert result.looks == LOOKS and "describe" in result.stages
    assert [caption for caption, _ in result.gallery[1:]] == [
        "a photo of a [V] face with ginger long hair", "a [V] face with ginger long hair at night"]
    with safe_open(str(result.adapter), "pt") as handle:
        recipe = json.loads(handle.metadata()["extra"])
    assert recipe["looks"] == LOOKS  # so the adapter says which words it was previewed with


def test_no_describe_skips_the_describer_and_keeps_the_models_prompts(described, face, tmp_path):
    result = personalize(job("tiny-described", face, tmp_path / "b", describe=False), progress=False)
    assert described == [] and result.looks == "" and "describe" not in result.stages
    assert [caption for caption, _ in result.gallery[1:]] == ["a photo of a [V] face", "a [V] face at night"]


def test_keep_styles_learns_the_described_style_prompts(described, face, tmp_path):
    from lowdim_sd.personalize_resolve import described_run

    run = described_run(resolve_run(job("tiny-described", face, tmp_path / "c", keep_styles=0.2)), LOOKS)
    assert finetune_config(run).style_prompts == ("a photo of a [V] face with ginger long hair",
                                                 "a [V] face with ginger long hair at night")


def test_describe_on_a_model_without_a_describer_is_one_line(tiny_sd, face, tmp_path, capsys):
    with pytest.raises(LowdimError, match=r"PersonalizeJob\(describe=True\): model '.*pipe' has no describer of looks"):
        resolve_run(job(str(tiny_sd), face, tmp_path / "d", describe=True))
    code = main(["personalize", "--model", str(tiny_sd), "--image", str(face), "--out", str(tmp_path / "e"),
                 "--describe", "--no-preview", "--no-crop"])
    captured = capsys.readouterr()
    assert code != 0 and "has no describer of looks" in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "e").exists()  # refused before anything was made


def test_the_bench_row_personalizes_with_the_looks_and_the_plain_row_without(described, faces, tmp_path):
    from lowdim_sd.bench.methods import METHODS, personalize_subject

    for name, expected in (("ours-described", LOOKS), ("ours", "")):
        row = dataclasses.replace(METHODS[name], steps=1, use_hypernet=False)  # the hypernetwork plays no part
        done = personalize_subject(load_sd("tiny-described"), row, faces[0], tmp_path / name, None)
        assert done.looks == expected
    assert len(described) == 1


def test_the_base_row_with_words_reads_the_looks_and_trains_nothing(described, faces, tmp_path):
    from lowdim_sd.bench.methods import METHODS, personalize_subject

    model = load_sd("tiny-described")
    before = {name: tensor.clone() for name, tensor in model.pipe.unet.state_dict().items()}
    done = personalize_subject(model, METHODS["base-described"], faces[0], tmp_path / "b", None)
    assert (done.looks, done.file, done.bytes) == (LOOKS, None, 0)
    assert len(described) == 1 and torch.equal(described[0], faces[0])
    assert all(torch.equal(before[name], tensor) for name, tensor in model.pipe.unet.state_dict().items())
    plain = personalize_subject(model, METHODS["base"], faces[0], tmp_path / "p", None)
    assert plain.looks == "" and len(described) == 1  # the plain floor does not ask
    assert done.seconds > 0 and plain.seconds == 0  # the words' row is timed: reading them is its work


def test_the_bench_leaves_described_rows_out_for_a_model_without_a_describer_and_refuses_them_asked(tiny_sd,
                                                                                                   tmp_path):
    from lowdim_sd.bench.methods import METHODS, get_method
    from lowdim_sd.bench.quality import QualityJob, check_job

    everything = QualityJob(identities=tmp_path, model=str(tiny_sd), out=tmp_path / "out")
    check_job(everything)
    assert not any(get_method(name).describe for name in everything.methods) and "ours" in everything.methods
    assert {"base", "only-hyper"} <= set(everything.methods)
    asked = QualityJob(identities=tmp_path, model=str(tiny_sd), out=tmp_path / "out", methods=["ours-described"])
    with pytest.raises(LowdimError, match="method 'ours-described' names the looks .* has none; leave it out"):
        check_job(asked)
    # Every row named explicitly is a request too: the described ones are refused, not silently dropped.
    listed = QualityJob(identities=tmp_path, model=str(tiny_sd), out=tmp_path / "out", methods=list(METHODS))
    with pytest.raises(LowdimError, match="names the looks"):
        check_job(listed)
    kept = QualityJob(identities=tmp_path, model="tinyfaces", out=tmp_path / "out")
    check_job(kept)
    assert kept.methods == [name for name in METHODS if name != "ours-k1"]  # its retrieval head has no iterations


def test_the_looks_line_names_the_preview_only_when_there_is_one(described, face, tmp_path, capsys):
    command = ["personalize", "-m", "tiny-described", "-i", str(face), "--steps", "1", "--no-crop", "--device", "cpu"]
    assert main([*command, "-o", str(tmp_path / "a"), "--no-preview"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"named after [V] in the draw line below: {LOOKS.strip()}" in said and "preview" not in said
    assert main([*command, "-o", str(tmp_path / "b"), "--preview-steps", "1"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"named after [V] in the preview and the draw line below: {LOOKS.strip()}" in said
