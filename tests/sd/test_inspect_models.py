"""``lowdim inspect --model/--model-config`` answer as personalize, generate, merge, train and precompute do:
the same "did you mean", the same missing-file line, and a hub id offline in one line without the network."""

from __future__ import annotations

import json
import socket

import pytest

from lowdim.option_words import command_line
from lowdim.registry import get_registry
from lowdim_cli.main import main
from lowdim_sd.loading import ModelLoadError, load_sd, refuse_a_misspelt_name


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())  # rich wraps long lines


def what_the_others_say(model: str, check=load_sd) -> str:
    """The error line personalize and the others print for ``--model model`` (they all load through load_sd)."""
    with command_line(), pytest.raises(ModelLoadError) as error:  # the commands' words, as inspect's
        check(model)
    return f"Error: {error.value}"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub and no network: a name lookup or connection attempt fails the test instead of being retried."""
    import lowdim.hub

    tried = []

    def no_network(*args, **kwargs):
        tried.append(args[:1])
        raise OSError("no network in this test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(lowdim.hub, "hub_reachable", lambda *args, **kwargs: False)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.chdir(tmp_path)  # "foo/bar" must not exist as a folder here
    return tried


@pytest.mark.parametrize("name, meant", [("tinyfacez", "tinyfaces"), ("SD15", "sd15")])
def test_a_near_miss_name_names_the_model_meant(capsys, name, meant):
    code, _, err = run(capsys, "inspect", "-m", name, "-s", "lidb", "--no-files")
    registered = list(get_registry().backends)
    expected = what_the_others_say(name, lambda model: refuse_a_misspelt_name(model, registered))
    assert code == 1 and err == expected and f"did you mean {meant}?" in err


def test_a_far_off_bare_word_is_still_an_unknown_model(capsys):
    code, _, err = run(capsys, "inspect", "-m", "sd99", "-s", "lidb", "--no-files")
    assert code == 1 and "unknown model 'sd99'" in err and "did you mean" not in err


@pytest.mark.parametrize("model", ["model.safetensors", "sub/model.safetensors", "a/b/c"])
def test_a_missing_model_file_is_no_such_file_as_for_the_others(capsys, tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "inspect", "-m", model, "-s", "lidb", "--no-files")
    assert code == 1 and err == f"Error: {model}: no such model file or folder"
    assert err == what_the_others_say(model)


def test_a_hub_id_offline_is_one_line_without_retries_or_the_network(capsys, offline):
    code, _, err = run(capsys, "inspect", "-m", "foo/bar", "-s", "lidb", "--no-files")
    assert code == 1 and offline == []
    assert err == what_the_others_say("foo/bar")  # personalize's line, word for word
    assert err.count("Error:") == 1 and "Retry" not in err and "Warning" not in err


def test_a_cached_hub_id_is_read_offline_from_the_cache(tiny_sd, tmp_path, capsys, offline, monkeypatch):
    import shutil

    from huggingface_hub import constants

    snapshot = tmp_path / "cache" / "models--someone--tiny" / "snapshots" / ("0" * 40)
    for part in ("unet", "text_encoder"):
        (snapshot / part).mkdir(parents=True)
        shutil.copy(tiny_sd / part / "config.json", snapshot / part / "config.json")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    code, out, err = run(capsys, "inspect", "-m", "someone/tiny", "-s", "lidb", "--json", "--no-files")
    assert code == 0 and offline == [], err
    code, expected, err = run(capsys, "inspect", "-m", tiny_sd, "-s", "lidb", "--json", "--no-files")
    assert json.loads(out)["groups"] == json.loads(expected)["groups"]


def test_a_registered_model_config_is_its_folder(tiny_sd, tmp_path, capsys):
    from lowdim_sd.ldm_checkpoint import save_single_file

    single = save_single_file(load_sd(str(tiny_sd), device="cpu", dtype="fp32").pipe, tmp_path / "one.safetensors")
    code, out, err = run(capsys, "inspect", "-m", single, "--model-config", "tinyfaces", "-s", "lidb", "--json",
                         "--no-files")
    assert code == 0, err
    code, expected, err = run(capsys, "inspect", "-m", "tinyfaces", "-s", "lidb", "--json", "--no-files")
    assert code == 0, err
    assert json.loads(out)["groups"] == json.loads(expected)["groups"]


def test_a_registered_model_config_on_the_hub_offline_is_one_line(tmp_path, capsys, offline):
    single = tmp_path / "one.safetensors"
    single.write_bytes(b"never read: --model-config gives the architecture")
    code, _, err = run(capsys, "inspect", "-m", single, "--model-config", "sd15", "-s", "lidb", "--no-files")
    hub_id = get_registry().backends["sd15"].value.source
    assert code == 1 and offline == [] and f"could not load '{hub_id}'" in err and "Retry" not in err


def test_help_says_model_config_takes_a_registered_name(capsys):
    code, out, _ = run(capsys, "inspect", "--help")
    assert code == 0 and "registered model's name" in " ".join(out.split())


@pytest.mark.parametrize("config, says", [
    ("tinyface", "unknown --model-config 'tinyface'; did you mean tinyfaces?"),
    ("./no-such-folder", "--model-config ./no-such-folder: no such folder"),
    ("one.safetensors", "--model-config one.safetensors: a file; pass the diffusers folder"),
    ("someone/model", "could not load 'someone/model'"),
    ("sd15", "then pass --model-config PATH (a diffusers folder of the same model)"),
])
def test_a_model_config_that_names_no_model_is_one_line_in_every_command(tmp_path, capsys, offline, config, says):
    single = tmp_path / "one.safetensors"
    single.write_bytes(b"never read: --model-config is checked first")
    answers = {command: run(capsys, *args, "-m", single, "--model-config", config) for command, args in {
        "inspect": ("inspect", "-s", "lidb", "--no-files"),
        "generate": ("generate", "-p", "a face", "-o", tmp_path / "out"),
    }.items()}
    for command, (code, _, err) in answers.items():
        assert code == 1 and says in err and "Traceback" not in err and "--model PATH" not in err, command
    assert answers["inspect"][2] == answers["generate"][2] and offline == []
    assert not (tmp_path / "out").exists()
