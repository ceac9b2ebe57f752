"""An adapter's recorded token as Draw's default prompt reads it (checked, as every other reader checks it), and
`lowdim generate --token` naming the token an adapter file records, spaces and all (FHS 1 and 2)."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors_edit import rewrite  # tests/, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")
HOSTILE_TOKEN = "a\x1b[31mb\nc"  # a terminal's colour code and a newline
SPACED = "sks person"  # what lowdim.save_adapter(token="sks person") records


@pytest.fixture
def adapter_with(untrained_adapter, tmp_path):
    """``adapter_with(token)``: a copy of the tiny model's adapter recording ``token``."""

    def make(token: str):
        return rewrite(shutil.copyfile(untrained_adapter, tmp_path / f"{len(token)}.safetensors"), token=token)

    return make


# ------------------------------------------------------------------------------- Draw's default prompt (1)
def test_draws_default_prompt_refuses_a_token_that_does_not_print_as_a_dropped_file_is(adapter_with):
    from lowdim_sd.ui.drawing import checked_upload, default_prompt

    bad = adapter_with(HOSTILE_TOKEN)
    with pytest.raises(LowdimError) as read:
        default_prompt(bad)
    line = str(read.value)
    assert line.startswith(f"{bad}: its token ") and "not printable" in line
    assert "\x1b" not in line and "\n" not in line  # one line, the escape code shown escaped
    with pytest.raises(LowdimError) as dropped:  # the same file dropped on Draw: the same line
        checked_upload(bad)
    assert str(dropped.value) == line


def test_draws_default_prompt_takes_a_token_with_a_space(adapter_with):
    from lowdim_sd.ui.drawing import DRAW_AFTER, default_prompt

    assert default_prompt(adapter_with(SPACED)) == f"a [V] face{DRAW_AFTER}"


# ------------------------------------------------------------------------------- generate --token (2)
def _generate(tiny_sd, out, *args: str) -> list[str]:
    return ["generate", "-m", str(tiny_sd), "-p", "a [V] face", "--steps", "1", "--guidance", "1", "-o", str(out),
            *args]


def test_generate_takes_the_token_the_adapter_records_spaces_and_all(tiny_sd, adapter_with, tmp_path, capsys):
    spaced = adapter_with(SPACED)
    out = tmp_path / "drawn"
    code = main(_generate(tiny_sd, out, "-a", str(spaced), "--token", SPACED))
    err = capsys.readouterr().err
    assert code == 0, err
    settings = json.loads((out / "prompts.json").read_text())["settings"]
    assert settings["token"] == SPACED and settings["adapters"][0]["token"] == SPACED
    assert "none of the adapters learned" not in err  # it is their word: nothing to warn about


@pytest.mark.parametrize(("given", "said"), [
    ("zwx", "and the -a files record 'zwx'"),  # the adapter records another word
    ("", "and no -a file records a token"),  # no adapter at all
])
def test_generate_refuses_several_words_no_adapter_records_saying_why(tiny_sd, adapter_with, tmp_path, capsys,
                                                                        given, said):
    adapters = ["-a", str(adapter_with("zwx"))] if given else []
    out = tmp_path / "drawn"
    code = main(_generate(tiny_sd, out, *adapters, "--token", SPACED))
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0] == (f"Error: --token must be one word, the rare word that [V] stands for; got '{SPACED}' (2 "
                        f"words), which only the token an adapter file records may be, {said}")
    assert not out.exists()


def test_generate_from_python_takes_the_attached_adapters_word_and_checks_it_prints(model, adapter_with):
    from lowdim_sd.generate import GenerateConfig, attach_adapters, detach_adapters, generate

    config = GenerateConfig(prompts=["a [V] face"], steps=1, guidance=1.0, token=SPACED)
    tokens = attach_adapters(model, [adapter_with(SPACED)])
    try:
        assert tokens == [SPACED] and len(generate(model, config, tokens)) == 1
        with pytest.raises(LowdimError, match=r"^GenerateConfig\(token=\.\.\.\) must be one word, .* and the "
                                              r"attached adapters record 'sks person'$"):
            generate(model, GenerateConfig(prompts=["a [V] face"], steps=1, token="sks man"), tokens)
        with pytest.raises(LowdimError, match=r"^GenerateConfig\(token=\.\.\.\) must be one word of printable"):
            generate(model, GenerateConfig(prompts=["a [V] face"], steps=1, token=HOSTILE_TOKEN), [HOSTILE_TOKEN])
    finally:
        detach_adapters(model)
