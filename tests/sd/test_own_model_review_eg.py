"""A user's own SD1.5 folder (review EG): an fp16 folder with a README or a checkpoints/ folder in a part loads;
personalize, train and merge never write into the model; a pickle in a folder never loaded is never read; a part
folder passed for the pipeline, weights under a name diffusers does not read, and --model-config beside a folder
model are each one line (or one warning) saying what to do."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.ldm_checkpoint import save_single_file
from lowdim_sd.loading import ModelLoadError, load_pipeline, load_sd
from lowdim_sd.model_info import pipeline_folder_info
from lowdim_sd.pipeline_parts import check_model_folder
from lowdim_sd.tiny import build_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def refusal(call) -> str:
    with pytest.raises(ModelLoadError) as refused:
        call()
    return str(refused.value)


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return " ".join(err[0].split())


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None: a folder), to see that nothing changed."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def problem(folder: Path) -> str | None:
    return dict(pipeline_folder_info(folder).rows).get("problem")


@pytest.fixture(scope="module")
def fp16_folder(tmp_path_factory) -> Path:
    """The tiny pipeline saved with ``variant="fp16"``: every part's weights as ``*.fp16.safetensors`` only."""
    folder = tmp_path_factory.mktemp("fp16") / "pipe"
    build_tiny_pipeline(0).save_pretrained(folder, variant="fp16")
    return folder


@pytest.fixture
def no_loading(monkeypatch):
    monkeypatch.setattr("lowdim_sd.loading.load_pipeline",
                        lambda *a, **k: pytest.fail("the model was loaded before --out was checked"))


# ------------------------------------------------------------- 1: names with no '.' in an fp16 folder's parts


def test_an_fp16_folder_with_a_readme_and_a_checkpoints_folder_in_its_parts_loads(fp16_folder, tmp_path):
    """diffusers' variant load reads every name in a part folder as NAME.VARIANT... and fails on one with no dot
    (``list index out of range``); ``lowdim train -o MODEL/unet`` once left such a checkpoints/ folder."""
    copied = Path(shutil.copytree(fp16_folder, tmp_path / "pipe"))
    (copied / "tokenizer" / "README").write_text("notes")  # a part with no variant file: every name is read
    (copied / "unet" / "checkpoints" / "step-000002").mkdir(parents=True)
    (copied / "vae" / "LICENSE").write_text("MIT")
    pipe = load_pipeline(str(copied), torch.float16)
    original = build_tiny_pipeline(0)
    for name in ("unet", "vae", "text_encoder"):
        loaded, made = getattr(pipe, name).state_dict(), getattr(original, name).state_dict()
        assert getattr(pipe, name).dtype == torch.float16, name  # in the dtype asked, whichever library loads it
        assert loaded.keys() == made.keys() and all(
            torch.allclose(loaded[key].float(), made[key], rtol=1e-2, atol=1e-3) for key in made), name
    assert problem(copied) is None


# ---------------------------------------------------------------- 2: --out never inside the model, nor the model


def _personalize(model: Path | str, out: Path | str, face: Path) -> int:
    return main(["personalize", "-m", str(model), "-i", str(face), "-o", str(out), "--steps", "1", "--resolution",
                 "16", "--no-crop", "--no-preview"])


def _train(model: Path | str, out: Path | str, face: Path, *flags: str) -> int:
    return main(["train", "-m", str(model), "-i", str(face), "-o", str(out), "--steps", "1", "--resolution", "16",
                 *flags])


@pytest.mark.parametrize("out", ["model", "part", "new part folder", "link", "link's part"])
@pytest.mark.parametrize("command", ["personalize", "train", "train --full"])
def test_personalize_and_train_refuse_an_out_in_the_model(fp16_folder, tmp_path, face, capsys, no_loading, out,
                                                          command):
    model = Path(shutil.copytree(fp16_folder, tmp_path / "mine"))
    (tmp_path / "link").symlink_to(model)
    given = {"model": model, "part": model / "unet", "new part folder": model / "unet" / "run",
             "link": tmp_path / "link", "link's part": tmp_path / "link" / "vae"}[out]
    before = tree(model)
    code = (_personalize(model, given, face) if command == "personalize"
            else _train(model, given, face, *command.split()[1:]))
    line = one_line(capsys)
    assert code == 1 and line.startswith(f"Error: {given}: is ") and str(model) in line and "pick a new --out" in line
    assert tree(model) == before


@pytest.mark.parametrize("flags", [(), ("--full", "--overwrite")])
def test_train_refuses_an_out_whose_output_would_replace_the_model(tiny_sd, tmp_path, face, capsys, no_loading,
                                                                   flags):
    """``train -m run/model -o run``: a --full run writes run/model, and an adapter run's --overwrite removes an
    earlier --full run's model there."""
    model = Path(shutil.copytree(tiny_sd, tmp_path / "run" / "model"))
    before = tree(tmp_path)
    assert _train(model, tmp_path / "run", face, *flags) == 1
    line = one_line(capsys)
    assert line.startswith(f"Error: {tmp_path / 'run'}: holds the base model at {model}") and "pick a new --out" in line
    assert tree(tmp_path) == before


def test_an_out_that_holds_the_model_elsewhere_is_fine(tiny_sd, tmp_path, face):
    """``-m ./mine -o .``: the adapter goes beside the model folder, into nothing of it."""
    from lowdim_sd.personalize import PersonalizeJob
    from lowdim_sd.personalize_checks import check_inputs
    from lowdim_sd.workflows import TrainJob, check_train_job

    model = str(shutil.copytree(tiny_sd, tmp_path / "mine"))
    check_train_job(TrainJob(model=model, images=[face], out=tmp_path))
    check_train_job(TrainJob(model=model, images=[face], out=tmp_path, full=True))  # writes tmp_path/model
    check_inputs(PersonalizeJob(model=model, image=face, out=tmp_path, preview=False))


def test_a_registered_models_folder_counts(tmp_path, face):
    from lowdim.registry import get_registry
    from lowdim_sd.workflows import TrainJob, check_train_job

    entry = get_registry().backends.get("tinyfaces")
    if entry is None:
        pytest.skip("lowdim-tinyfaces is not installed")
    inside = Path(entry.value.source) / "me"
    with pytest.raises(LowdimError, match="is inside the base model") as refused:
        check_train_job(TrainJob(model="tinyfaces", images=[face], out=inside))  # a check: nothing is written
    assert str(inside) in str(refused.value) and not inside.exists()


def test_merge_refuses_an_out_inside_the_model(tiny_sd, tmp_path, capsys, untrained_adapter):
    model = Path(shutil.copytree(tiny_sd, tmp_path / "mine"))
    before = tree(model)
    assert main(["merge", "-m", str(model), "-a", str(untrained_adapter), "-o", str(model / "merged"), "--format",
                 "diffusers"]) == 1
    assert one_line(capsys).startswith(f"Error: {model / 'merged'}: is inside the base model {model}")
    assert tree(model) == before


# -------------------------------------------------------------------- 3: pickles in folders lowdim never opens


class Trap:
    """A pickle that, once unpickled, leaves a file at ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("listed", [[None, None], ["stable_diffusion", "StableDiffusionSafetyChecker"], None])
def test_a_pickle_in_a_folder_never_loaded_is_never_read_nor_refused(tiny_sd, tmp_path, listed):
    """An old conversion's safety_checker/pytorch_model.bin (listed or not), a samples/ folder model_index.json
    does not name: never opened, so the model loads."""
    copied = Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))
    marker = tmp_path / "unpickled"
    for folder in ("safety_checker", "feature_extractor", "samples"):
        (copied / folder).mkdir()
        (copied / folder / "pytorch_model.bin").write_bytes(pickle.dumps(Trap(marker)))
        (copied / folder / "config.json").write_text("{}")
    index = json.loads((copied / "model_index.json").read_text())
    if listed is None:
        index.pop("safety_checker")
    else:
        index["safety_checker"] = listed
    (copied / "model_index.json").write_text(json.dumps(index))
    assert problem(copied) is None
    pipe = load_pipeline(str(copied), torch.float32)
    assert pipe.safety_checker is None and not marker.exists()


def test_a_pickle_in_a_part_that_loads_is_still_refused(tiny_sd, tmp_path):
    copied = Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))
    (copied / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (copied / "vae" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(Trap(marker)))
    said = refusal(lambda: load_pipeline(str(copied), torch.float32))
    assert said.startswith(f"{copied / 'vae' / 'diffusion_pytorch_model.bin'}: pickle weights") and not marker.exists()


# --------------------------------------------------- 4, 5: a part folder given where its pipeline belongs


@pytest.fixture(scope="module")
def single_file(tiny_sd, tmp_path_factory) -> Path:
    return save_single_file(load_pipeline(str(tiny_sd), torch.float32),
                            tmp_path_factory.mktemp("single") / "model.safetensors")


def test_a_model_config_with_no_model_index_names_the_option_and_the_pipeline_above(tiny_sd, single_file, tmp_path):
    said = refusal(lambda: load_pipeline(str(single_file), torch.float32, config=str(tiny_sd / "unet")))
    assert said.startswith(f"load_sd(config='{tiny_sd / 'unet'}'): a folder with no model_index.json")
    assert said.endswith(f"pass {tiny_sd}")
    (tmp_path / "loose").mkdir()
    said = refusal(lambda: load_pipeline(str(single_file), torch.float32, config=str(tmp_path / "loose")))
    assert said.startswith(f"load_sd(config='{tmp_path / 'loose'}'): a folder with no model_index.json")
    assert "pass the diffusers folder" in said


def test_the_command_names_model_config_as_typed(tiny_sd, single_file, tmp_path, capsys):
    assert main(["generate", "-m", str(single_file), "--model-config", str(tiny_sd / "unet"), "-p", "a face",
                 "--steps", "1", "-o", str(tmp_path / "g")]) == 1
    line = one_line(capsys)
    assert line.startswith(f"Error: --model-config {tiny_sd / 'unet'}: a folder with no model_index.json")
    assert line.endswith(f"pass {tiny_sd}")


def test_a_part_folder_as_the_model_points_to_its_pipeline(tiny_sd, tmp_path, capsys):
    said = refusal(lambda: load_pipeline(str(tiny_sd / "unet"), torch.float32))
    assert said.startswith(f"{tiny_sd / 'unet'}: not a diffusers pipeline folder") and said.endswith(f"pass {tiny_sd}")
    assert main(["show", str(tiny_sd / "unet"), "--json"]) == 0  # session 60 (FHI): shown, not an Error line
    said = json.loads(capsys.readouterr().out)
    assert said["kind"] == f"the unet part of the diffusers pipeline {tiny_sd}" and f"-m {tiny_sd} " in said["command"]
    (tmp_path / "loose").mkdir()
    assert "pass" not in refusal(lambda: load_pipeline(str(tmp_path / "loose"), torch.float32))


# --------------------------------------------------------- 6: weights under a name diffusers does not read


@pytest.mark.parametrize(("part", "expected", "renamed"), [
    ("unet", "diffusion_pytorch_model.safetensors", "model.safetensors"),
    ("text_encoder", "model.safetensors", "weights.safetensors")])
def test_weights_under_another_name_are_one_line_naming_both(tiny_sd, tmp_path, capsys, part, expected, renamed):
    copied = Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))
    (copied / part / expected).rename(copied / part / renamed)
    said = refusal(lambda: check_model_folder(copied))
    assert said.startswith(f"{copied / part}: no {expected}") and f"found '{renamed}'" in said
    assert problem(copied) == said  # show's problem row
    assert main(["generate", "-m", str(copied), "-p", "a face", "--steps", "1", "-o", str(tmp_path / "g")]) == 1
    assert one_line(capsys) == f"Error: {said}"  # diffusers' logger line does not get through


# ------------------------------------------------------------- 7: --model-config beside a folder model


def test_a_model_config_beside_a_folder_model_is_warned_unused(tiny_sd, tmp_path):
    other = Path(shutil.copytree(tiny_sd, tmp_path / "other"))
    config = json.loads((other / "scheduler" / "scheduler_config.json").read_text())
    (other / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "beta_end": 0.5}))
    with pytest.warns(UserWarning, match=re.escape(f"load_sd(config='{other}'): not used: ") + ".* its own configs"):
        model = load_sd(str(tiny_sd), "cpu", "fp32", config=str(other))
    assert model.pipe.scheduler.config.beta_end == config["beta_end"]  # the folder's own


def test_the_unused_model_config_warning_names_a_registered_model_as_typed(tiny_sd):
    with pytest.warns(UserWarning, match=r"not used: tinyfaces is a diffusers pipeline") as said:
        load_sd("tinyfaces", "cpu", "fp32", config=str(tiny_sd))
    assert not [w for w in said if "lowdim_tinyfaces" in str(w.message)]  # not the plugin's install folder


def test_a_single_file_read_with_model_config_is_not_warned(tiny_sd, tmp_path):
    import warnings

    single = save_single_file(build_tiny_pipeline(0), tmp_path / "mine.safetensors")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        load_sd(str(single), "cpu", "fp32", config=str(tiny_sd))
    assert not [w for w in said if "not used" in str(w.message)]
