"""`lowdim train` refuses a flag its mode never reads (--space beside --full, --layers beside --init,
--train-text-encoder without --full, ...) in one line before the model loads, instead of dropping it without a
word; the combinations each mode does read still reach the model."""

from __future__ import annotations

import re
import shutil

import pytest
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd import workflows
from lowdim_sd.workflows import TrainJob, check_train_job


class ModelLoaded(Exception):
    """Raised in place of loading the model: a refusal must come before it, and an accepted run gets to it."""


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A reference picture and an --init file, and a load_sd that stops the run where the model would load."""
    def load(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr(workflows, "load_sd", load)
    Image.new("RGB", (16, 16), "gray").save(tmp_path / "face.png")
    (tmp_path / "a.safetensors").write_bytes(b"never read: every refusal comes first")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def train(capsys, *args: str) -> tuple[int, str]:
    code = main(["train", "-m", "tinyfaces", "-i", "face.png", "--steps", "1", "-o", "run", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("args", "named"), [
    (["--full", "--space", "lora"], ["--space", "--full", "leave --space out"]),
    (["--full", "--space", "lidb"], ["--space", "--full"]),  # typed at its default: still not read
    (["--full", "--set", "rank=8"], ["--set", "--full", "leave --set out"]),
    (["--full", "--layers", "text"], ["--layers", "--full", "--train-text-encoder"]),
    (["--full", "--init", "a.safetensors"], ["--init", "--full", "choose one"]),
    (["--init", "a.safetensors", "--space", "lora"], ["--space", "--init", "--rank"]),
    (["--init", "a.safetensors", "--set", "rank=8"], ["--set", "--init", "--rank"]),
    (["--init", "a.safetensors", "--layers", "text"], ["--layers", "--init", "initial adapter's"]),
    (["--train-text-encoder"], ["--train-text-encoder", "--full"]),
    (["--init", "a.safetensors", "--train-text-encoder"], ["--train-text-encoder", "--full"]),
    (["--no-merge-frozen"], ["--no-merge-frozen", "--init"]),
    (["--merge-frozen"], ["--merge-frozen", "--init"]),  # typed at its default
    (["--full", "--no-merge-frozen"], ["--no-merge-frozen", "--init"]),
    (["--full", "--save-dtype", "fp32"], ["--save-dtype", "--full", "leave --save-dtype out"]),
    (["--full", "--save-dtype", "fp16"], ["--save-dtype", "--full"]),  # typed at its default
])
def test_a_flag_the_mode_does_not_read_is_one_line_before_the_model_loads(files, capsys, args, named):
    code, stderr = train(capsys, *args)
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert all(text in lines[0] for text in named), lines[0]
    assert not (files / "run").exists()


def test_the_first_flag_given_is_the_one_named(files, capsys):
    code, stderr = train(capsys, "--init", "a.safetensors", "--space", "lora", "--set", "rank=8", "--layers", "text")
    assert code == 1 and stderr.strip().startswith("Error: --space")


@pytest.mark.parametrize("args", [
    ["--full", "--train-text-encoder"],
    ["--space", "lora", "--set", "rank=8", "--layers", "text"],
    ["--space", "lidb", "--layers", "unet"],
    ["--init", "a.safetensors", "--rank", "8", "--no-merge-frozen"],
    ["--init", "a.safetensors", "--merge-frozen"],
    [],
])
def test_flags_the_mode_reads_still_reach_the_model(files, capsys, args, untrained_adapter):
    shutil.copy(untrained_adapter, files / "a.safetensors")  # --init's file is read before the load: a real one
    with pytest.raises(ModelLoaded):
        train(capsys, *args)


@pytest.mark.parametrize(("options", "message"), [
    ({"full": True, "space": "lora"}, "TrainJob(space=...) picks"),
    ({"full": True, "space_options": {"rank": 8}}, "TrainJob(space_options=...) sets"),
    ({"full": True, "initial": "a.safetensors"}, "choose one"),
    ({"initial": "a.safetensors", "layers": "text"}, "TrainJob(layers=...) picks"),
    ({"train_text_encoder": True}, "TrainJob(train_text_encoder=...) only applies with TrainJob(full=True)"),
    ({"merge_frozen": False}, "TrainJob(merge_frozen=False)"),
])
def test_the_library_refuses_the_same_settings_off_their_defaults(tmp_path, options, message):
    with pytest.raises(LowdimError) as error:
        check_train_job(TrainJob(model="tinyfaces", images=[tmp_path / "face.png"], out=tmp_path / "o", **options))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("mode", "said"), [(["--full"], "full DreamBooth trains one subject at a time"),
                                            (["--init", "a.safetensors"], "rank-relaxed finetuning starts from one")])
def test_several_subjects_for_a_one_subject_mode_is_one_line_before_the_model_loads(files, capsys, mode, said):
    for name in ("ann", "bob"):
        (files / "people" / name).mkdir(parents=True)
        Image.new("RGB", (16, 16), "gray").save(files / "people" / name / "face.png")
    code = main(["train", "-m", "tinyfaces", "--subjects", "people", "--steps", "1", "-o", "run", *mode])
    err = capsys.readouterr().err
    assert code == 1 and said in err and "use --images, not --subjects" in err and "Traceback" not in err


def train_flags() -> set[str]:
    """Every flag `lowdim train` takes, as its parser knows them (both halves of --merge-frozen/--no-merge-frozen)."""
    import click
    import typer.main

    from lowdim_cli.main import app

    group = typer.main.get_command(app)
    command = group.get_command(click.Context(group), "train")
    return {flag for param in command.params for flag in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize(("args", "refused"), [
    (["--full", "--set", "rank=8"], "--set"), (["--init", "a.safetensors", "--set", "rank=8"], "--set"),
    (["--full", "--init", "a.safetensors"], "--init"), (["--init", "a.safetensors", "--space", "lora"], "--space"),
    (["--init", "a.safetensors", "--layers", "text"], "--layers"), (["--full", "--layers", "text"], "--layers"),
    (["--init", "a.safetensors", "--train-text-encoder"], "--train-text-encoder"),
    (["--full", "--space", "lora"], "--space"), (["--no-merge-frozen"], "--no-merge-frozen"),
])
def test_a_conflict_line_names_only_flags_the_command_takes_and_first_the_one_refused(files, capsys, args, refused):
    """Not the TrainJob field a flag sets (--space-options for --set, --initial for --init), which no one can type;
    and the flag the line refuses comes first, as the user typed it."""
    code, stderr = train(capsys, *args)
    named = re.findall(r"(?<![\w-])--[a-z][a-z-]*", stderr)
    assert code == 1 and set(named) <= train_flags(), stderr
    assert stderr.split()[:2] == ["Error:", refused], stderr
