"""Attribute captions and the warm start of a retrained TinyFaces base model (train_model --captions/--init-from)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")

from lowdim_tinyfaces.captions import ATTRIBUTE_PHRASES, attribute_caption, attribute_words, describe  # noqa: E402
from lowdim_tinyfaces.identity import CARDINALITIES, FACTOR_NAMES  # noqa: E402
from lowdim_tinyfaces.styles import STYLES, prompt_for  # noqa: E402
from lowdim_tinyfaces.train_config import TrainConfig, build_tokenizer, tokenizer_words  # noqa: E402
from lowdim_tinyfaces.train_init import remap_token_table  # noqa: E402
from lowdim_tinyfaces.train_steps import batch_captions, sample_batch  # noqa: E402

levels_strategy = st.lists(st.integers(0, 10**6), min_size=len(FACTOR_NAMES), max_size=len(FACTOR_NAMES)).map(
    lambda values: np.array(values) % CARDINALITIES)


@given(levels_strategy, st.sampled_from(list(ATTRIBUTE_PHRASES)))
def test_a_named_factor_says_its_level(levels, factor) -> None:
    caption = describe(levels, {factor})
    level = levels[FACTOR_NAMES.index(factor)]
    phrase = ATTRIBUTE_PHRASES[factor][level]
    if factor == "hair_style" and phrase == "bald":
        assert caption == " with a bald head"
    elif factor in ("hair_colour", "hair_style"):
        assert caption == f" with {phrase} hair"
    else:
        assert caption == (f" with {phrase}" if phrase else "")


@given(levels_strategy)
def test_naming_nothing_is_the_plain_caption(levels) -> None:
    assert describe(levels, set()) == ""
    rng = np.random.default_rng(0)
    assert attribute_caption(levels, 3, rng, plain_rate=1.0) == prompt_for(3, "face")


@pytest.mark.parametrize("factor", list(ATTRIBUTE_PHRASES))
def test_every_level_of_a_named_factor_reads_differently(factor) -> None:
    base = np.zeros(len(FACTOR_NAMES), dtype=np.int64)
    base[FACTOR_NAMES.index("hair_style")] = 4  # long hair, so a hair colour is visible
    captions = set()
    for level in range(CARDINALITIES[FACTOR_NAMES.index(factor)]):
        levels = base.copy()
        levels[FACTOR_NAMES.index(factor)] = level
        captions.add(describe(levels, {factor}))
    assert len(captions) == CARDINALITIES[FACTOR_NAMES.index(factor)]


@given(levels_strategy, st.integers(0, len(STYLES) - 1))
def test_naming_everything_keeps_the_style_template(levels, style) -> None:
    caption = attribute_caption(levels, style, np.random.default_rng(1), name_rate=1.0, plain_rate=0.0)
    assert caption == prompt_for(style, "face" + describe(levels, set(ATTRIBUTE_PHRASES)))
    assert "sks" not in caption.split()


def test_attribute_vocabulary_is_whole_words_and_the_style_one_unchanged(tmp_path) -> None:
    attributes = tokenizer_words("attributes")
    assert set(tokenizer_words("style")) < set(attributes)
    assert attribute_words() <= set(attributes)
    tok = build_tokenizer(tmp_path, 77, "attributes")
    for word in attribute_words():
        assert len(tok(word).input_ids) == 3, word
    with pytest.raises(ValueError, match="captions='words'"):
        TrainConfig(captions="words")


def test_batch_captions_are_a_function_of_the_step() -> None:
    levels, styles, seeds = sample_batch(0, 2, 7, 64)
    first = batch_captions(0, 2, 7, levels, styles, dropout=0.1)
    assert first == batch_captions(0, 2, 7, levels, styles, dropout=0.1)
    assert first != batch_captions(0, 2, 8, levels, styles, dropout=0.1)
    assert 0 < first.count("") < 20  # about 10% dropped for guidance


@settings(max_examples=30)
@given(st.lists(st.sampled_from("abcdefgh"), unique=True, min_size=1),
       st.lists(st.sampled_from("abcdefghij"), unique=True, min_size=1))
def test_remap_copies_exactly_the_shared_tokens(old_tokens, new_tokens) -> None:
    old_vocab = {t: i for i, t in enumerate(old_tokens)}
    new_vocab = {t: i for i, t in enumerate(new_tokens)}
    old = torch.randn(len(old_tokens), 3)
    new = torch.randn(len(new_tokens), 3)
    table, copied = remap_token_table(old, old_vocab, new, new_vocab)
    assert copied == len(set(old_tokens) & set(new_tokens))
    for token, row in new_vocab.items():
        expected = old[old_vocab[token]] if token in old_vocab else new[row]
        assert torch.equal(table[row], expected), token


def test_warm_start_keeps_the_exported_weights(tmp_path) -> None:
    from lowdim_tinyfaces.train_config import build_text_encoder, build_unet
    from lowdim_tinyfaces.train_init import warm_start

    cfg = TrainConfig().micro()
    cfg.unet = {**cfg.unet, "block_out_channels": [16, 16], "norm_num_groups": 4,
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "attention_head_dim": 4}
    cfg.text = {**cfg.text, "hidden_size": 16, "intermediate_size": 32, "projection_dim": 16,
                "num_attention_heads": 2}
    torch.manual_seed(0)
    unet, text = build_unet(cfg), build_text_encoder(cfg)
    old_tok = build_tokenizer(tmp_path / "old" / "tokenizer", 16)
    unet.save_pretrained(tmp_path / "old" / "unet")
    text.save_pretrained(tmp_path / "old" / "text_encoder")
    new_cfg = TrainConfig(**{**cfg.__dict__, "captions": "attributes"})
    new_tok = build_tokenizer(tmp_path / "new", 16, "attributes")
    messages: list[str] = []
    new_unet, new_text = warm_start(new_cfg, tmp_path / "old", new_tok, messages.append)
    for (name, a), b in zip(unet.state_dict().items(), new_unet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    old_vocab = json.loads((tmp_path / "old" / "tokenizer" / "vocab.json").read_text())
    assert old_vocab == old_tok.get_vocab()
    old_table = text.get_input_embeddings().weight
    new_table = new_text.get_input_embeddings().weight
    for word in ("face", "night", "<|endoftext|>"):
        token = word if word.startswith("<") else word + "</w>"
        assert torch.equal(new_table[new_tok.get_vocab()[token]], old_table[old_vocab[token]]), word
    assert new_table.shape[0] > old_table.shape[0]
    assert "token rows copied" in messages[0]


def test_a_warm_started_vae_keeps_its_weights_and_not_its_folder(tmp_path) -> None:
    from lowdim_tinyfaces.train_config import build_vae
    from lowdim_tinyfaces.train_init import load_vae

    torch.manual_seed(0)
    vae = build_vae(TrainConfig().micro())
    vae.register_to_config(scaling_factor=0.52)
    vae.save_pretrained(tmp_path / "old" / "vae")
    loaded = load_vae(tmp_path / "old")
    for (name, a), b in zip(vae.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.config.scaling_factor == 0.52
    loaded.save_pretrained(tmp_path / "new" / "vae")
    written = json.loads((tmp_path / "new" / "vae" / "config.json").read_text())
    assert "_name_or_path" not in written and str(tmp_path) not in json.dumps(written)


def test_each_sample_gets_its_styles_prompt_or_the_empty_one_when_dropped(tmp_path) -> None:
    from lowdim_tinyfaces.train_config import training_prompts
    from lowdim_tinyfaces.train_unet import attribute_prompts, style_prompts, tokenize

    tokenizer = build_tokenizer(tmp_path / "tok", 16, captions="attributes")
    table = tokenize(tokenizer, training_prompts() + [""])
    levels, styles, _ = sample_batch(0, 2, 7, 64)
    kept = style_prompts(TrainConfig(prompt_dropout=0.0), table, styles, torch.Generator().manual_seed(0))
    assert kept[0] is table and kept[1].tolist() == styles.tolist()
    dropped = style_prompts(TrainConfig(prompt_dropout=1.0), table, styles, torch.Generator().manual_seed(0))
    assert set(dropped[1].tolist()) == {len(table) - 1}
    cfg = TrainConfig(captions="attributes", prompt_dropout=0.1)
    ids, rows = attribute_prompts(cfg, tokenizer, 7, levels, styles)
    wanted = batch_captions(cfg.seed, 2, 7, levels, styles, cfg.prompt_dropout)
    assert torch.equal(ids[rows], tokenize(tokenizer, wanted))  # each sample's row is its own caption
    assert len(ids) == len(set(wanted)) < len(wanted)  # each distinct caption encoded once
