"""A ``lowdim precompute`` rerun into an --out made with other options names each by the flag typed (``--lr``,
``--no-augment``, ``--set rank``), not by the index's ``config.`` field, both where it is refused before the model
loads and where only the loaded model tells (its resolution); from Python, the fields. Every difference is named, so
one rerun fixes them all (past eight, the rest counted, as ``lowdim train --resume``'s refusal does), and from Python
its other refusals (another dtype, another identities folder) name the ``PrecomputeJob`` fields too."""

from __future__ import annotations

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim.option_words import command_line
from lowdim_cli.main import main
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.precompute_header import precompute_differences
from lowdim_sd.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def args(tiny_sd, tmp_path) -> list[str]:
    """A precompute of two people into ``tmp_path/w``, run once."""
    for number in range(2):
        save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(number)) * 2 - 1,
                    tmp_path / "people" / f"p{number}", "x")
    return ["precompute", "-m", str(tiny_sd), "-i", str(tmp_path / "people"), "-o", str(tmp_path / "w"), "--steps",
            "1", "--no-crop", "--device", "cpu"]


def _refusal(capsys, args: list[str]) -> str:
    """The one line a refused rerun prints, its wrapping undone."""
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("Error:") == 1, err
    return " ".join(err.split())


def test_a_rerun_with_other_options_names_the_flags(args, capsys):
    assert main(args) == 0
    capsys.readouterr()
    said = _refusal(capsys, [*args, "--lr", "1e-2", "--no-augment"])
    assert "other settings: --augment there, --no-augment now; --lr (0.002 there, 0.01 now); rerun with" in said
    assert "config." not in said and "learning_rate" not in said


def test_space_options_are_named_by_set_and_another_space_once(args, capsys):
    assert main(args) == 0
    capsys.readouterr()
    said = _refusal(capsys, [*args, "--set", "rank=2", "--seed", "3"])
    assert "other settings: --set rank (1 there, 2 now); --seed (0 there, 3 now); rerun with" in said
    said = _refusal(capsys, [*args, "--space", "lora"])
    # --lr left out: its rate is the space's default, which going back to lidb fixes too (not a second change)
    assert "other settings: --space (lidb there, lora now); rerun with" in said
    assert "--set" not in said and "{" not in said  # another space's config: --space says it


def test_a_rate_typed_or_recorded_typed_is_named_beside_the_space(args, capsys):
    assert main(args) == 0
    capsys.readouterr()
    said = _refusal(capsys, [*args, "--space", "lora", "--lr", "1e-4"])  # typed, at lora's own default
    assert "other settings: --space (lidb there, lora now); --lr (0.002 there, 0.0001 now); rerun with" in said
    typed = [*args]
    typed[typed.index("-o") + 1] += "-typed"  # another folder, made with --lr typed
    assert main([*typed, "--lr", "1e-2"]) == 0
    capsys.readouterr()
    said = _refusal(capsys, [*typed, "--space", "lora"])  # typed there: going back to lidb leaves the rate to fix
    assert "other settings: --space (lidb there, lora now); --lr (0.01 there, 0.0001 now); rerun with" in said


def test_what_only_the_loaded_model_tells_is_named_by_its_flag_too(args, capsys):
    assert main([*args, "--resolution", "32"]) == 0
    capsys.readouterr()
    said = _refusal(capsys, args)  # the model's own resolution, known once it loads
    assert "other settings: --resolution (32 there, 16 now); rerun with" in said


def test_from_python_the_refusal_names_the_fields_the_user_set(tiny_sd, people, tmp_path):
    def job(space_options=None, layers=None, **config) -> PrecomputeJob:
        return PrecomputeJob(model=str(tiny_sd), identities=people, out=tmp_path / "w", crop=False,
                             space_options=space_options or {}, layers=layers, config=TrainConfig(steps=1, **config))

    precompute(job())
    with pytest.raises(lowdim.LowdimError) as refused:
        precompute(job(augment=False, learning_rate=1e-2, space_options={"rank": 2}, layers="unet"))
    said = str(refused.value)
    assert ("other settings: PrecomputeJob(space_options=...) rank (1 there, 2 now); PrecomputeJob(layers=...) "
            "('unet+text' there, 'unet' now); TrainConfig(augment=...) (on there, off now); "
            "PrecomputeJob(learning_rate=...) (0.002 there, 0.01 now); rerun with") in said, said
    assert "config." not in said and "layer_set" not in said and "--" not in said
    with pytest.raises(lowdim.LowdimError) as refused:  # another space: its own line, not its options'
        precompute(PrecomputeJob(model=str(tiny_sd), identities=people, out=tmp_path / "w", crop=False,
                                 space="lora", config=TrainConfig(steps=1, seed=3)))
    said = str(refused.value)
    # from Python nobody says whether the rate was typed: it is named, as the CLI names a typed --lr
    assert ("other settings: PrecomputeJob(space=...) ('lidb' there, 'lora' now); TrainConfig(seed=...) (0 there, "
            "3 now); PrecomputeJob(learning_rate=...) (0.002 there, 0.0001 now); rerun with") in said, said
    assert "space_options" not in said and "{" not in said


def test_an_init_and_the_layers_are_named_by_what_the_user_gave():
    with command_line():  # the lines of `lowdim precompute`, which runs inside it
        _the_flags_name_an_init_and_the_layers()


def _the_flags_name_an_init_and_the_layers():
    given = {"init_path": {"resolved": "/a.safetensors"}, "config": {"init": "d1"}}
    assert precompute_differences("config.init", {"config": {}}, given) == ["no --init there, --init /a.safetensors "
                                                                            "now"]
    rewritten = {**given, "config": {"init": "d2"}}
    assert precompute_differences("config.init", given, rewritten) == [
        "--init /a.safetensors (another initial adapter there: the file changed since)"]
    layers = {"model": "m", "layer_set": "unet", "layers": [["a", 4, 4]]}
    assert precompute_differences("layers", layers, {**layers, "layers": [["a", 4, 8]]}) == [
        "the layers of the --model (as many, of other shapes; the model changed since)"]
    assert precompute_differences("layers", layers, {**layers, "layer_set": "unet+text", "layers": []}) == []
    assert precompute_differences("config.optimizer", {"config": {}}, {"config": {"optimizer": "sgd"}}) == [
        "--optimizer (adamw there, sgd now)"]


def test_a_rerun_names_every_difference_and_counts_those_past_eight(args, capsys):
    assert main(args) == 0
    capsys.readouterr()
    said = _refusal(capsys, [*args, "--lr", "1e-2", "--no-augment", "--seed", "3"])  # a third one is named too
    assert ("other settings: --seed (0 there, 3 now); --augment there, --no-augment now; --lr (0.002 there, 0.01 "
            "now); rerun with") in said
    more = ["--set", "rank=2", "--batch-size", "2", "--optimizer", "sgd", "--prompt", "a [V] person", "--token",
            "zqx", "--shared-noise", "--mixed-precision", "bf16", "--steps", "2"]
    said = _refusal(capsys, [*args, "--lr", "1e-2", "--no-augment", "--seed", "3", *more])
    assert said.count(" there") == 8 and "; and 3 more; rerun with" in said, said


def _job(tiny_sd, identities, out, **fields) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=identities, out=out, crop=False, device="cpu",
                         config=TrainConfig(steps=1), **fields)


def test_from_python_another_dtype_or_folder_is_named_by_the_fields(tiny_sd, people, tmp_path):
    precompute(_job(tiny_sd, people, tmp_path / "w", dtype="fp32"))
    with pytest.raises(lowdim.LowdimError, match=r"trained in fp32, .*: pass dtype='fp32' to") as refused:
        precompute(_job(tiny_sd, people, tmp_path / "w", dtype="bf16"))
    assert "--" not in str(refused.value) and "use another out to start anew" in str(refused.value)
    others = tmp_path / "others"
    save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1, others / "q", "x")
    with pytest.raises(lowdim.LowdimError, match=r"holds weights of the identities in .*: use another out ") as refused:
        precompute(_job(tiny_sd, others, tmp_path / "w", dtype="fp32"))
    assert "--" not in str(refused.value) and " -w " not in str(refused.value)


def test_an_init_known_by_its_digest_alone_is_worded_for_its_reader():
    from lowdim_sd.weight_index import shown_init

    assert shown_init("d1", {}) == "an init of digest d1"  # from Python: PrecomputeJob's field, not the flag
    assert shown_init(None, {}) == "no init"
    with command_line():
        assert (shown_init("d1", {}), shown_init(None, {})) == ("an --init of digest d1", "no --init")


def test_every_switch_is_worded_on_and_off_from_python_as_the_flags_say_it_on_the_command_line():
    differences = {field: ({"config": {name: True}}, {"config": {name: False}})
                   for field, name in [("config.crop", "crop"), ("config.augment", "augment"),
                                       ("config.shared_noise", "shared_noise")]}
    from_python = {field: precompute_differences(field, *sides) for field, sides in differences.items()}
    assert from_python == {"config.crop": ["PrecomputeJob(crop=...) (on there, off now)"],
                           "config.augment": ["TrainConfig(augment=...) (on there, off now)"],
                           "config.shared_noise": ["PrecomputeJob(shared_noise=...) (on there, off now)"]}
    with command_line():
        typed = {field: precompute_differences(field, *sides) for field, sides in differences.items()}
    assert typed == {"config.crop": ["--crop there, --no-crop now"],
                     "config.augment": ["--augment there, --no-augment now"],
                     "config.shared_noise": ["--shared-noise there, no --shared-noise now"]}
