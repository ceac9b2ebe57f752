"""What train-hypernet's refusals and files say, and what bench quality says of a network it cannot score
(review DJ 2, 6 and 9): the flag the user typed, the encoder that was built, and a remedy that exists."""

from __future__ import annotations

import json

import pytest
import torch
from hypertrain_jobs import TINY_VIT  # tests/sd, on the path as pytest puts it
from safetensors import safe_open

import lowdim
from lowdim.option_words import command_line
from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["--width", "16", "--heads", "2", "--iterations", "1", "--steps", "1", "--batch-size", "2",
         "--val-identities", "0", "--alpha", "0", "--log-every", "0", "--checkpoint-every", "0", "--device", "cpu"]


@pytest.mark.parametrize(("flag", "value"), [("--iterations", "0"), ("--width", "0"), ("--heads", "0")])
def test_train_hypernet_refuses_a_zero_count_by_the_flag_typed(weights, tmp_path, capsys, flag, value):
    given = [*SMALL]
    given[given.index(flag) + 1] = value
    code = main(["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config", "tiny",
                 *given])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert f"{flag} must be an integer >= 1, got 0" in err
    assert "hyper:" not in err and "attention_heads" not in err and "Traceback" not in err


def _encoder_record(path) -> str:
    with safe_open(str(path), "pt") as opened:
        return opened.metadata()["encoder"]


# No hub id: the name the config was given by (--encoder-config tiny), else "inline config" (FHS 5).
@pytest.mark.parametrize(("config", "recorded"), [("tiny", "tiny"), (json.dumps(TINY_VIT), "inline config")])
def test_a_random_encoders_file_records_no_hub_id(weights, tmp_path, capsys, config, recorded):
    code = main(["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config", config,
                 *SMALL])
    assert code == 0, capsys.readouterr().err
    assert _encoder_record(tmp_path / "h" / "hypernet.safetensors") == recorded


def test_a_random_encoder_named_from_python_records_its_name(tmp_path):
    from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet

    layers = [lowdim.LayerSpec("a.to_q", 8, 8)]
    for label, recorded in (("my-tiny-vit", "my-tiny-vit"), (None, "inline config")):
        named = {"encoder": label} if label else {}
        config = HyperConfig(encoder_config=TINY_VIT, width=16, attention_heads=2, **named)
        net = HyperNetwork(config, lowdim.get_space("lora", {"rank": 1}), layers)
        assert _encoder_record(save_hypernet(tmp_path / f"{label}.safetensors", net)) == recorded


def test_bench_quality_says_it_cannot_score_another_spaces_hypernetwork(tiny_sd, tmp_path):
    from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet
    from lowdim.sizing import layer_specs
    from lowdim_sd.bench.methods import METHODS, personalize_subject
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    model = load_sd(str(tiny_sd))
    layers = layer_specs(model.modules, resolve_layers(None))
    net = HyperNetwork(HyperConfig(encoder_config=TINY_VIT, width=16, attention_heads=2),
                       lowdim.get_space("lora", {"rank": 2}), layers)
    file = save_hypernet(tmp_path / "lora-hyper.safetensors", net, {"model": str(tiny_sd), "layer_set": "unet+text"},
                         adapter_seed=0)
    with command_line(), pytest.raises(lowdim.LowdimError) as refused:  # as `lowdim bench quality` runs a row
        personalize_subject(model, METHODS["only-hyper"], torch.zeros(3, 16, 16), tmp_path / "work", file)
    message = str(refused.value)
    assert "pass --space" not in message and "the file predicts --space" not in message  # bench has no --space
    assert "bench quality" in message and "LiDB" in message and "cannot score" in message
    assert f"`lowdim personalize --space lora --set rank=2 --hypernet {file}`" in message
    assert "`lowdim eval`" in message and "\n" not in message
    with pytest.raises(lowdim.LowdimError) as refused:  # from Python: the job's field, not a flag
        personalize_subject(model, METHODS["ours"], torch.zeros(3, 16, 16), tmp_path / "work2", file)
    assert "PersonalizeJob(space='lora'" in str(refused.value) and "--space" not in str(refused.value)


def test_bench_quality_says_it_cannot_score_a_lidb_hypernetwork_of_other_options(tiny_sd, tmp_path):
    from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet
    from lowdim.sizing import layer_specs
    from lowdim_sd.bench.methods import METHODS, personalize_subject
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    model = load_sd(str(tiny_sd))
    net = HyperNetwork(HyperConfig(encoder_config=TINY_VIT, width=16, attention_heads=2),
                       lowdim.get_space("lidb", {"a": 10, "b": 5}), layer_specs(model.modules, resolve_layers(None)))
    file = save_hypernet(tmp_path / "lidb-small.safetensors", net, {"model": str(tiny_sd), "layer_set": "unet+text"},
                         adapter_seed=0)
    with command_line(), pytest.raises(lowdim.LowdimError) as refused:
        personalize_subject(model, METHODS["ours"], torch.zeros(3, 16, 16), tmp_path / "work", file)
    message = str(refused.value)
    assert "cannot score" in message and "pass --space" not in message
    assert "lidb adapters with other options (--space lidb --set a=10 --set b=5)" in message
