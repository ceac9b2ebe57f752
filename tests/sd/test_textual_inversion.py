"""Textual Inversion (issue 16): training touches only [V]'s rows, files export to diffusers and A1111,
an embedding composes with a weight adapter in generate and merge, and bad input is one clear line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cli_train_runs import one_subject  # tests/sd, on the path as pytest puts it
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.export import export_adapter
from lowdim_sd.loading import load_sd
from lowdim_sd.textual_inversion import (
    EmbeddingError,
    export_embedding,
    load_embedding,
    prompt_token,
    read_embedding,
    ti_trainable,
)
from lowdim_sd.tiny import build_tiny_pipeline
from lowdim_sd.train import TrainConfig, train
from lowdim_sd.workflows import TrainJob, build_trainable, subject_sets, train_config

PROMPT = "a photo of sks face wearing hat"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add OpenMP spin-waiting on a shared box
    yield
    torch.set_num_threads(threads)


def _image(pipe) -> np.ndarray:
    generator = torch.Generator().manual_seed(123)
    return pipe(PROMPT, num_inference_steps=3, height=16, width=16, generator=generator, output_type="np").images


def _table(model) -> torch.Tensor:
    return model.pipe.text_encoder.get_input_embeddings().weight


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return one_subject(tmp_path_factory.mktemp("refs"), side=16)


@pytest.fixture(scope="module")
def trained(tiny_sd, refs, tmp_path_factory):
    """(model after 4 steps of two-vector TI, its original embedding table, the written file)."""
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    original = _table(model).detach().clone()
    out = tmp_path_factory.mktemp("ti")
    job = TrainJob(model=str(tiny_sd), images=[refs], space="ti", space_options={"vectors": 2, "init_word": "face"},
                   out=out, save_dtype="fp32", learning_rate=0.05, config=TrainConfig(steps=4, token="sks"))
    # run_train hands a given model back as it was; the test reads the trained table, so it trains as run_train
    # does without the hand-back.
    names, subjects = subject_sets(job, model.resolution)
    trainable = build_trainable(job, model, names)
    config = dataclasses.replace(train_config(job), token=prompt_token("sks", 2))
    train(model, subjects, trainable, config, out_dir=out, progress=False)
    return model, original, out / "adapter.safetensors"


def test_training_moves_the_new_vectors_and_leaves_every_other_row_bit_identical(trained):
    model, original, path = trained
    vocabulary = len(original)
    tokenizer = model.pipe.tokenizer
    assert tokenizer.convert_tokens_to_ids(["sks", "sks_1"]) == [vocabulary, vocabulary + 1]
    adapters = lowdim.Adapters(model.modules)
    vectors = adapters.tensors("subject")[next(iter(adapters.slots("subject")))]["vectors"].detach()
    face = original[tokenizer.convert_tokens_to_ids("face</w>")]
    assert (vectors - face).abs().max() > 1e-3  # trained away from the init word
    before = model.pipe.text_encoder(tokenizer("a face", return_tensors="pt").input_ids)[0]
    adapters.merge("subject")
    merged = _table(model).detach()
    assert merged.shape == (vocabulary + 2, original.shape[1])
    assert torch.equal(merged[:vocabulary], original)  # bit for bit, not merely close
    assert torch.allclose(merged[vocabulary:], vectors)
    after = model.pipe.text_encoder(tokenizer("a face", return_tensors="pt").input_ids)[0]
    assert torch.equal(before, after)  # prompts without [V] encode exactly as before
    adapters.unmerge("subject")
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    assert (meta["format"], meta["space"], meta["token"]) == ("lowdim.adapter", "ti", "sks")
    assert '"vectors":2' in meta["space_config"] and '"init_word":"face"' in meta["space_config"]
    assert torch.allclose(read_embedding(path).vectors, vectors)


def test_embedding_exports_load_in_plain_diffusers_and_draw_lowdim_s_image(trained, tiny_sd, tmp_path):
    path = trained[2]
    mine = load_sd(str(tiny_sd), "cpu", "fp32")
    base = _image(mine.pipe)
    assert load_embedding(mine, path) == "sks"
    expected = _image(mine.pipe)
    assert np.abs(expected - base).max() > 0.01  # the embedding must matter, or equal images prove nothing
    for fmt in ("diffusers", "a1111"):
        out = export_embedding(path, tmp_path / f"sks.{fmt}.safetensors", fmt, dtype=torch.float32)
        keys = set(load_file(out))
        assert keys == ({"sks"} if fmt == "diffusers" else {"emb_params"})
        fresh = build_tiny_pipeline(seed=0)
        fresh.load_textual_inversion(str(out), token=None if fmt == "diffusers" else "sks")
        assert np.abs(_image(fresh) - expected).max() < 1e-3, fmt
        # Handed back to lowdim, the export is named for what it is and where it goes.
        with pytest.raises(lowdim.LowdimError, match=rf"this is a Textual Inversion embedding \({fmt} format\), "
                                                     r"not a lowdim adapter: use it in diffusers"):
            lowdim.read_adapter(out)
        from lowdim_sd.file_info import describe

        assert describe(out).kind == f"a Textual Inversion embedding ({fmt} format, exported by lowdim)"


def _random_lidb(tiny_sd, path):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    adapters = lowdim.inject(model.modules, lowdim.get_space("lidb"), ["unet.*attn2.to_v", "text_encoder.*q_proj"])
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return lowdim.save_adapter(path, adapters, token="sks")


def test_an_embedding_and_a_weight_adapter_load_together_and_merge_folds_both(trained, tiny_sd, tmp_path):
    from lowdim_sd.generate import attach_adapters
    from lowdim_sd.merged_model import save_merged

    lidb = _random_lidb(tiny_sd, tmp_path / "lidb.safetensors")
    ti = trained[2]
    both = load_sd(str(tiny_sd), "cpu", "fp32")
    assert attach_adapters(both, [(lidb, 1.0), (ti, 1.0)]) == ["sks", "sks"]
    expected = _image(both.pipe)
    fresh = build_tiny_pipeline(seed=0)  # plain diffusers, reading the two exports
    with pytest.warns(UserWarning, match="ComfyUI reads only the kohya format"):
        peft = export_adapter(lidb, tmp_path / "lidb.peft.safetensors", "diffusers", "fp32")
    fresh.load_lora_weights(str(peft))
    fresh.load_textual_inversion(str(export_embedding(ti, tmp_path / "ti.safetensors", dtype=torch.float32)))
    assert np.abs(_image(fresh) - expected).max() < 1e-3
    only_ti = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(only_ti, [(ti, 1.0)])
    assert np.abs(_image(only_ti.pipe) - expected).max() > 0.01  # the LiDB counts too
    merged = load_sd(str(tiny_sd), "cpu", "fp32")
    with pytest.warns(UserWarning, match="2 adapters learned the word 'sks'"):  # as generate warns of the pair
        folder, tokens = save_merged(merged, [(lidb, 1.0), (ti, 1.0)], tmp_path / "merged", fmt="diffusers")
    assert tokens == ["sks", "sks"]
    reloaded = load_sd(str(folder), "cpu", "fp32")
    assert np.abs(_image(reloaded.pipe) - expected).max() < 1e-3
    with pytest.raises(lowdim.LowdimError, match="single-file.*--format diffusers"):
        save_merged(load_sd(str(tiny_sd), "cpu", "fp32"), [(ti, 1.0)], tmp_path / "m.safetensors")


def _foreign_embedding(path, width: int, rows: int):
    """A TI file for a text encoder whose embedding is (rows, width): another model's."""
    encoder = nn.Module()
    encoder.embeddings = nn.Module()
    encoder.embeddings.token_embedding = nn.Embedding(rows, width)
    model = nn.ModuleDict({"text_encoder": encoder})
    targets = lowdim.LayerSet("e", ("text_encoder.embeddings.token_embedding",), types=("embedding",))
    lowdim.inject(model, lowdim.get_space("ti"), targets)
    return lowdim.save_adapter(path, model, token="zz", base_model="big-model")


def test_bad_embeddings_and_tokens_are_refused_naming_what_is_wrong(trained, tiny_sd, tmp_path):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    vocabulary = model.pipe.tokenizer.vocab_size
    with pytest.raises(EmbeddingError, match="width 48 .*big-model.*width 32"):
        load_embedding(model, _foreign_embedding(tmp_path / "wide.safetensors", 48, vocabulary + 1))
    with pytest.raises(EmbeddingError, match=f"vocabulary of {vocabulary + 5} tokens.*has {vocabulary}"):
        load_embedding(model, _foreign_embedding(tmp_path / "other.safetensors", 32, vocabulary + 6))
    rows = len(_table(model))
    load_embedding(model, trained[2])
    with pytest.raises(EmbeddingError, match="token 'sks' is already claimed") as error:
        load_embedding(model, trained[2])
    assert "\n" not in str(error.value) and len(_table(model)) == rows + 2  # the refused one added nothing


def test_a_bad_init_word_or_identifier_is_one_line_before_the_model_changes(tiny_sd):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    rows = len(_table(model))
    with pytest.raises(lowdim.LowdimError, match=r"init_word 'sunglasses' is split into \d+ tokens"):
        ti_trainable(model, lowdim.get_space("ti", init_word="sunglasses"))
    with pytest.raises(lowdim.LowdimError, match="identifier 'a' is itself a token"):
        ti_trainable(model, lowdim.get_space("ti"), token="a")
    assert len(_table(model)) == rows and len(model.pipe.tokenizer) == rows
    with pytest.warns(UserWarning, match="identifier 'hat' is already a word of the vocabulary"):
        ti_trainable(model, lowdim.get_space("ti"), token="hat")
    with pytest.raises(lowdim.ConfigError, match="init_word must be one word"):
        lowdim.get_space("ti", init_word="red hat")
    from lowdim_sd.modes import adapter_trainable, resolve_layers

    with pytest.raises(lowdim.LowdimError, match="learns token vectors, not weight layers"):
        adapter_trainable(model, lowdim.get_space("ti"), resolve_layers(None))  # precompute, the bench's rows


def test_cli_trains_ti_with_its_space_options_and_refuses_layers(tiny_sd, refs, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "-m", str(tiny_sd), "-i", str(refs), "--space", "ti", "--set", "vectors=3",
                 "--set", "init_word=person", "--steps", "2", "--out", str(out), "--token", "zwx"])
    assert code == 0, capsys.readouterr().err
    embedding = read_embedding(out / "adapter.safetensors")
    assert embedding.token == "zwx" and embedding.vectors.shape == (3, 32)
    for option, message in (("--layers=unet", "--layers does not apply"),
                            ("--set=init_word=sunglasses", "init_word 'sunglasses' is split into")):
        code = main(["train", "-m", str(tiny_sd), "-i", str(refs), "--space", "ti", option, "--steps", "1",
                     "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and message in err[0], err


def test_bench_quality_runs_the_textual_inversion_row(tiny_sd, refs, tmp_path, monkeypatch):
    import dataclasses

    from lowdim_sd.bench import methods as bench_methods
    from lowdim_sd.bench.methods import parse_methods
    from lowdim_sd.bench.quality import QualityJob, run_quality

    recipe = bench_methods.METHODS["ti"]
    assert (recipe.label, recipe.steps, recipe.learning_rate) == ("Textual Inversion", 5000, 4e-2)
    assert parse_methods("ti") == [recipe]  # what `lowdim bench quality --methods ti` asks for
    table = {**bench_methods.METHODS, "ti": dataclasses.replace(recipe, steps=3)}  # 3 steps: a tiny model
    monkeypatch.setattr(bench_methods, "METHODS", table)  # the bench's rows and lookups read it there
    identities = tmp_path / "ids"
    identities.mkdir()
    (identities / "id-0.png").write_bytes(next(refs.glob("*.png")).read_bytes())
    job = QualityJob(identities=identities, model=str(tiny_sd), out=tmp_path / "bench", methods=["ti"], metrics=[],
                     prompts=["a [V] face"], sample_steps=2)
    [result] = run_quality(job)
    assert (result["method"], result["identity"]) == ("ti", "id-0")
    assert 0 < result["bytes"] < 20_000 and result["seconds"] > 0  # a few KB of vectors, not a model
    assert (tmp_path / "bench" / "images" / "ti" / "id-0" / "00.png").exists()


def test_subjects_trained_in_one_batch_get_the_vectors_of_training_alone(tiny_sd, faces):
    from lowdim_sd.train import Subject, train

    def vectors(subjects: list[Subject]) -> torch.Tensor:
        model = load_sd(str(tiny_sd), "cpu", "fp32")
        names = [f"s{index}" for index in range(len(subjects))]
        trainable = ti_trainable(model, lowdim.get_space("ti", vectors=2), subject_names=names)
        config = TrainConfig(steps=2, learning_rate=0.05, token="sks sks_1")
        train(model, subjects, trainable, config, progress=False)
        return trainable.parameters[0].detach()

    together = vectors([Subject(faces[:1], 0), Subject(faces[1:], 1)])
    alone = vectors([Subject(faces[1:], 1)])
    assert together.shape == (2, 2, 32)
    assert torch.allclose(together[1], alone, atol=1e-5)
    assert (together[0] - together[1]).abs().max() > 1e-4  # each subject its own vectors


def test_cli_generate_export_merge_and_inspect_take_an_embedding(trained, tiny_sd, tmp_path, capsys):
    ti, lidb = trained[2], _random_lidb(tiny_sd, tmp_path / "lidb.safetensors")
    code = main(["generate", "-m", str(tiny_sd), "-a", f"{ti}:0.8", "-a", str(lidb), "-p", "a [V] face",
                 "--steps", "2", "-o", str(tmp_path / "img")])
    assert code == 0, capsys.readouterr().err
    assert len(list((tmp_path / "img").glob("0*.png"))) == 1
    code = main(["export", str(ti), "--format", "a1111", "-o", str(tmp_path / "sks.safetensors")])
    assert code == 0 and set(load_file(tmp_path / "sks.safetensors")) == {"emb_params"}
    capsys.readouterr()
    code = main(["export", str(ti), "--format", "kohya", "-o", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "diffusers or a1111, not 'kohya'" in err[0]
    code = main(["merge", "-m", str(tiny_sd), "-a", str(ti), "-o", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--format diffusers" in err[0]
    assert main(["inspect", "-m", "sd15", "--space", "ti", "--set", "vectors=2", "--json", "--no-files"]) == 0
    report = capsys.readouterr().out
    assert '"text encoder token embedding"' in report and '"params": 1536' in report  # 2 x 768 numbers
