"""One token check for Textual Inversion files, shared by generate's loader and export: a token lowdim would
refuse to draw with is never handed to other tools, and none that rewrites a terminal or fills a prompt loads."""

from __future__ import annotations

import shutil

import pytest
from safetensors_edit import rewrite

from lowdim_sd.export import export_adapter
from lowdim_sd.loading import load_sd
from lowdim_sd.textual_inversion import MAX_TOKEN, EmbeddingError, load_embedding, token_problem

REFUSED = [
    ("sk\ns", "holds whitespace or a character that does not print"),
    ("sk\x1b[31ms", "holds whitespace or a character that does not print"),
    ("sk s", "holds whitespace or a character that does not print"),
    ("sk\u2028s", "holds whitespace or a character that does not print"),
    ("x" * 5000, f"is longer than {MAX_TOKEN} characters"),
    ("<|endoftext|>", "is written as a special token"),
    ("[V]", "holds capital letters"),
]
NAMES = ["line-break", "escape", "space", "line-separator", "5000-characters", "special", "capitals"]


@pytest.fixture
def embedding_file(lidb_and_ti, tmp_path):
    return shutil.copy(lidb_and_ti[1], tmp_path / "ti.safetensors")


@pytest.mark.parametrize(("token", "why"), REFUSED, ids=NAMES)
def test_export_refuses_a_token_generate_would_refuse(embedding_file, tmp_path, token, why):
    rewrite(embedding_file, token=token)
    target = tmp_path / "v.safetensors"
    with pytest.raises(EmbeddingError) as refused:
        export_adapter(embedding_file, target, fmt="diffusers")
    message = str(refused.value)
    assert message.startswith(f"{embedding_file}: its token ") and why in message
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)
    assert not target.exists()


@pytest.mark.parametrize(("token", "why"), [REFUSED[1], REFUSED[4]], ids=[NAMES[1], NAMES[4]])
def test_generate_s_loader_refuses_control_characters_and_overlong_tokens(embedding_file, tiny_sd, token, why):
    rewrite(embedding_file, token=token)
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    size = len(model.pipe.tokenizer)
    with pytest.raises(EmbeddingError, match=why):
        load_embedding(model, embedding_file)
    assert len(model.pipe.tokenizer) == size  # nothing added


@pytest.mark.parametrize("token", ["sks", "<my-face>", "zwx_v2", "élan"])
def test_tokens_people_use_pass(token):
    assert token_problem(token) is None


def test_a_good_token_still_exports(embedding_file, tmp_path):
    rewrite(embedding_file, token="<my-face>")
    assert export_adapter(embedding_file, tmp_path / "v.safetensors", fmt="a1111").is_file()


def test_training_refuses_a_token_no_file_could_hold(tiny_sd):
    import lowdim
    from lowdim.errors import LowdimError
    from lowdim_sd.textual_inversion import ti_trainable

    model = load_sd(str(tiny_sd), "cpu", "fp32")
    with pytest.raises(LowdimError, match="longer than 64 characters"):
        ti_trainable(model, lowdim.get_space("ti", vectors=1, init_word="face"), token="x" * 65)
