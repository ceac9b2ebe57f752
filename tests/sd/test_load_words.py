"""From Python, ``load_sd``'s refusals name ``load_sd``'s parameters (``load_sd(config=...)``, the model) and
``DrawParts``' name its fields, never a CLI flag; inside ``command_line()`` (the ``lowdim`` command, the page)
they still name the flags, word for word (review AD4)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from safetensors.torch import save_file

from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_sd.draw_parts import DrawParts, parse_draw
from lowdim_sd.generate import GenerateConfig, check_config
from lowdim_sd.loading import load_pipeline, load_sd


@pytest.fixture
def checkpoint(tmp_path):
    """A file that passes for a single-file checkpoint until diffusers reads it."""
    path = tmp_path / "m1.safetensors"
    save_file({"model.diffusion_model.x": torch.zeros(1)}, str(path))
    return path


@pytest.fixture
def offline_hub(monkeypatch):
    """No hub: what a user without network (or with HF_HUB_OFFLINE) gets."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def configs_need_the_hub(monkeypatch):
    """diffusers failing to fetch a single file's configs, as it does offline."""
    from diffusers import StableDiffusionPipeline

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them "
                      "in the cached files; you are in offline mode")

    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file", offline)


def lowdim_file(folder, fmt: str, **metadata: str):
    path = folder / f"{fmt}.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": fmt, **metadata})
    return path


def refusal(call) -> str:
    with pytest.raises(LowdimError) as error:
        call()
    return str(error.value)


# (id, call, words from Python, words on the command line, as the command has always said them)
CASES = [
    ("config no such folder", lambda t, c: load_sd(str(c), config=str(t / "nonexist")),
     "load_sd(config='{t}/nonexist'): no such folder", "--model-config {t}/nonexist: no such folder"),
    ("config a file", lambda t, c: load_sd(str(c), config=str(c)),
     "load_sd(config='{c}'): a file; pass the diffusers folder", "--model-config {c}: a file; pass the diffusers"),
    ("config misspelt", lambda t, c: load_sd(str(c), config="tinyface"),
     "unknown load_sd(config='tinyface'); did you mean tinyfaces?",
     "unknown --model-config 'tinyface'; did you mean tinyfaces?"),
    ("config hub id offline", lambda t, c: load_sd(str(c), config="owner/not-here"),
     "then pass its path as load_sd(config=...) (a diffusers folder of the same model)",
     "then pass --model-config PATH (a diffusers folder of the same model)"),
    ("model hub id offline", lambda t, c: load_sd("owner/not-here"),
     "then pass its path as the model (a diffusers folder or a .safetensors checkpoint)",
     "then pass --model PATH (a diffusers folder or a .safetensors checkpoint)"),
    ("single file offline", lambda t, c: load_sd(str(c)),
     "(offline? pass load_sd(config=...), a local diffusers folder of the same model)",
     "(offline? pass --model-config, a local diffusers folder of the same model)"),
    ("an image", lambda t, c: load_pipeline(str(t / "face.png"), torch.float32),
     "an image, not a model; a model is a registered name",
     "an image, not a model; --model takes a registered name"),
    ("a face photo", lambda t, c: load_pipeline(str(t / "face.png"), torch.float32),
     "(a face photo goes to PersonalizeJob(image=...))", "(a face photo goes to --image)"),
    ("a text file", lambda t, c: load_pipeline(str(t / "notes.txt"), torch.float32),
     "not a model file; a model is", "not a model file; --model takes"),
    ("an adapter", lambda t, c: load_pipeline(str(lowdim_file(t, "lowdim.adapter", base_model="tinyfaces")),
                                              torch.float32),
     "a lowdim adapter, not a model: attach it to its base model (tinyfaces) with attach_adapters",
     "a lowdim adapter, not a model: pass it with --adapter (-a), and its base model (tinyfaces) with --model"),
    ("a hypernetwork", lambda t, c: load_pipeline(str(lowdim_file(t, "lowdim.hypernet")), torch.float32),
     "a lowdim hypernetwork, not a model: pass it as PersonalizeJob(hypernet=...)",
     "a lowdim hypernetwork, not a model: pass it with --hypernet"),
    ("a LoRA", lambda t, c: load_pipeline(str(lowdim_file(t, "kohya-lora", lora_format="kohya")), torch.float32),
     "a kohya LoRA, not a model; a model is", "a kohya LoRA, not a model; --model takes"),
    ("a VAE", lambda t, c: load_pipeline(str(lowdim_file(t, "vae")), torch.float32),
     "tensors), so not a model checkpoint; a model is", "tensors), so not a model checkpoint; --model takes"),
    ("text encoder scale", lambda t, c: check_config(GenerateConfig("a", parts=DrawParts(text_encoder_scale=float(
        "nan")))), "DrawParts(text_encoder_scale=...) must be a finite number, got nan",
     "--text-encoder-scale must be a finite number, got nan"),
    ("cross-attention scale", lambda t, c: check_config(GenerateConfig("a", parts=DrawParts(
        cross_attention_scale=float("inf")))), "DrawParts(cross_attention_scale=...) must be a finite number, got inf",
     "--cross-attention-scale must be a finite number, got inf"),
    ("adapter start", lambda t, c: check_config(GenerateConfig("a", parts=DrawParts(adapter_start=1.0))),
     "DrawParts(adapter_start=...) must be a fraction of the steps in [0, 1), got 1.0",
     "--adapter-start must be a fraction of the steps in [0, 1), got 1.0"),
    ("adapter end", lambda t, c: check_config(GenerateConfig("a", parts=DrawParts(adapter_start=0.5, adapter_end=0.4))),
     "DrawParts(adapter_end=...) must be a fraction of the steps after DrawParts(adapter_start=...) (0.5) and at most "
     "1, got 0.4", "--adapter-end must be a fraction of the steps after --adapter-start (0.5) and at most 1, got 0.4"),
    ("a draw's start", lambda t, c: parse_draw("te=0@start=1"),  # PersonalizeJob(preview_draws=...)'s short form
     "'te=0@start=1': start must be a fraction of the steps in [0, 1), got 1.0",
     "'te=0@start=1': --adapter-start must be a fraction of the steps in [0, 1), got 1.0"),
    ("a draw's end", lambda t, c: parse_draw("start=0.3@end=0.1"),
     "'start=0.3@end=0.1': end must be a fraction of the steps after start (0.3) and at most 1, got 0.1",
     "'start=0.3@end=0.1': --adapter-end must be a fraction of the steps after --adapter-start (0.3)"),
    ("a draw's te", lambda t, c: parse_draw("te=1e999"), "'te=1e999': te must be a finite number, got inf",
     "'te=1e999': --text-encoder-scale must be a finite number, got inf"),
]


@pytest.fixture
def env(tmp_path, checkpoint, offline_hub, configs_need_the_hub):
    (tmp_path / "face.png").write_bytes(b"not read: its name says what it is")
    (tmp_path / "notes.txt").write_text("not a model")
    return tmp_path, checkpoint


def words(text: str, env) -> str:
    return text.format(t=env[0], c=env[1])


@pytest.mark.parametrize("call, python, _", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_python_caller_is_told_the_parameter_it_passed(env, call, python, _):
    message = refusal(lambda: call(*env))
    assert words(python, env) in message
    assert "--" not in message and "\n" not in message, message


@pytest.mark.parametrize("call, _, cli", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_the_command_still_names_its_flags(env, call, _, cli):
    with command_line():
        message = refusal(lambda: call(*env))
    assert words(cli, env) in message
    assert "load_sd(" not in message and "DrawParts(" not in message and "PersonalizeJob(" not in message


def test_a_bare_word_that_is_no_installed_model_says_so_beside_the_hub(monkeypatch):
    """A plugin model whose package was uninstalled is a bare word the hub lookup cannot find: the line says it is
    no installed model either, and where installed ones are listed (a hub id, owner/name, is not told so)."""
    from lowdim_sd.loading import ModelLoadError, load_sd

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"could not load 'mymodel': no installed model \(lowdim models lists "
                                             r"them; a plugin's model needs its package\), no local folder"):
        load_sd("mymodel")
    with pytest.raises(ModelLoadError) as error:
        load_sd("someone/mymodel")
    assert "installed model" not in str(error.value)


@pytest.mark.parametrize("words", [contextlib.nullcontext, command_line], ids=["python", "command-line"])
def test_a_bare_word_given_as_the_config_is_not_called_an_installed_model(monkeypatch, checkpoint, words):
    """load_sd(config=...) and --model-config take a folder, never a model's name: no models list to point at."""
    from lowdim_sd.loading import ModelLoadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with words(), pytest.raises(ModelLoadError, match=r"could not load 'myconfig': no local folder") as error:
        load_sd(str(checkpoint), config="myconfig")
    assert "installed model" not in str(error.value) and "(a diffusers folder of the same model)" in str(error.value)
