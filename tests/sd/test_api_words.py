"""A message raised to a Python caller names the parameter it passed (``TrainConfig(steps=...)``), never a CLI
flag (``--steps``), and the ``lowdim`` command still names the flag: the checks are shared, the words are not."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.devices import device_problem, resolve_dtype
from lowdim_sd.face_inputs import load_face_image
from lowdim_sd.faces import choose_face
from lowdim_sd.generate import GenerateConfig, check_config, check_resolution
from lowdim_sd.personalize import PersonalizeJob, resolve_run
from lowdim_sd.personalize_checks import check_crop_flags, check_job
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, check_train_job, subject_folders, subject_sets


@pytest.fixture
def env(tmp_path, face, tiny_sd):
    """What the calls need: a face photo, a free output folder, a model folder, a folder with a sub-folder."""
    (tmp_path / "refs" / "inner").mkdir(parents=True)
    (tmp_path / "refs" / "a.png").write_bytes(face.read_bytes())
    (tmp_path / "refs" / "inner" / "b.png").write_bytes(face.read_bytes())
    return {"face": face, "out": tmp_path / "out", "model": str(tiny_sd), "tmp": tmp_path}


def train(env, config: TrainConfig | None = None, **fields) -> None:
    fields.setdefault("images", [env["face"]])
    check_train_job(TrainJob(model=env["model"], out=env["out"], config=config or TrainConfig(), **fields))


def person(env, **fields) -> PersonalizeJob:
    return PersonalizeJob(model=env["model"], image=env["face"], out=env["out"], **fields)


def precompute_checks(env, **fields) -> None:
    from lowdim_sd.precompute import PrecomputeJob, precompute

    precompute(PrecomputeJob(model=env["model"], identities=env["tmp"] / "refs", out=env["out"], **fields),
               progress=False)


def blank_photo(env):
    """A grey photo, large enough to search, with no face in it."""
    from PIL import Image

    path = env["tmp"] / "blank.png"
    Image.new("RGB", (200, 200), "grey").save(path)
    return path


# (id, call, words from Python): each call raises a LowdimError whose message holds the words and no flag.
CASES = [
    ("config steps", lambda e: train(e, TrainConfig(steps=0)), "TrainConfig(steps=...) must be >= 1, got 0"),
    ("config steps -1", lambda e: TrainConfig(steps=-1).validate(), "TrainConfig(steps=...) must be >= 0, got -1"),
    ("job lr", lambda e: train(e, learning_rate=0.0), "TrainJob(learning_rate=...) must be a positive number"),
    ("job lr nan", lambda e: train(e, learning_rate=float("nan")), "TrainJob(learning_rate=...) must be a positive"),
    ("precompute lr", lambda e: precompute_checks(e, learning_rate=0.0),
     "PrecomputeJob(learning_rate=...) must be a positive number"),
    ("config lr", lambda e: train(e, TrainConfig(learning_rate=0.0)),
     "TrainConfig(learning_rate=...) must be a positive number, got 0.0"),
    ("config batch", lambda e: train(e, TrainConfig(batch_size=0)), "TrainConfig(batch_size=...) must be >= 1, got 0"),
    ("config grad_accum", lambda e: train(e, TrainConfig(grad_accum=0)), "TrainConfig(grad_accum=...) must be >= 1"),
    ("config mixed", lambda e: train(e, TrainConfig(mixed_precision="fp8")),
     "TrainConfig(mixed_precision=...) must be one of no, fp16, bf16, got 'fp8'"),
    ("config decay", lambda e: train(e, TrainConfig(weight_decay=-1)), "TrainConfig(weight_decay=...) must be >= 0"),
    ("config checkpoints", lambda e: train(e, TrainConfig(checkpoint_every=-1)),
     "TrainConfig(checkpoint_every=...) must be >= 0 (0: never)"),
    ("config optimizer", lambda e: train(e, TrainConfig(optimizer="adam")),
     "TrainConfig(optimizer=...) must be one of adamw, sgd, got 'adam'"),
    ("config keep_styles", lambda e: train(e, TrainConfig(keep_styles=-1)),
     "TrainConfig(keep_styles=...) must be a number >= 0"),
    ("config lr not a number", lambda e: train(e, TrainConfig(learning_rate="x")),
     "TrainConfig(learning_rate=...) must be a number, got 'x'"),
    ("config steps not a number", lambda e: train(e, TrainConfig(steps="10")),
     "TrainConfig(steps=...) must be an integer, got '10'"),
    ("config steps a bool", lambda e: train(e, TrainConfig(steps=True)),
     "TrainConfig(steps=...) must be an integer, got True"),
    ("config batch a bool", lambda e: train(e, TrainConfig(batch_size=False)),
     "TrainConfig(batch_size=...) must be an integer, got False"),
    ("config augment not a bool", lambda e: TrainConfig(augment="no").validate(),
     "TrainConfig(augment=...) must be True or False, got 'no'"),
    ("config token not a str", lambda e: TrainConfig(token=5).validate(),
     "TrainConfig(token=...) must be one word (a str) or None, got 5"),
    ("config token empty", lambda e: train(e, TrainConfig(token="")),
     "TrainConfig(token=...) is empty: give one word, the rare word that [V] stands for, or leave TrainConfig.token "
     "unset"),
    ("config token spaces", lambda e: train(e, TrainConfig(token="a b")), "TrainConfig(token=...) must be one word"),
    ("rank", lambda e: train(e, rank=0), "TrainJob(rank=...) must be >= 1, got 0"),
    ("save dtype", lambda e: train(e, save_dtype="half"),
     "TrainJob(save_dtype=...) must be one of fp32, fp16, bf16, got 'half'; did you mean fp16?"),
    ("dropout", lambda e: train(e, dropout=2), "TrainJob(dropout=...) must be a number in [0, 1)"),
    ("dropout full", lambda e: train(e, dropout=0.1, full=True),
     "TrainJob(dropout=...) drops an adapter's input, and TrainJob(full=True) trains the model's own weights, "
     "which carry no adapter: leave dropout= out"),
    ("dropout ti", lambda e: train(e, dropout=0.1, space="ti"),
     "TrainJob(dropout=...) does not apply to TrainJob(space='ti')"),
    ("full space", lambda e: train(e, full=True, space="lora"),
     "TrainJob(space=...) picks an adapter's weight space, and TrainJob(full=True) trains the model's own weights, "
     "with no adapter: leave space= out"),
    ("full init", lambda e: train(e, full=True, initial=e["face"]), "TrainJob(initial=...) finetunes a LoRA"),
    ("full merge", lambda e: train(e, full=True, merge_frozen=False),
     "TrainJob(merge_frozen=False) says whether TrainJob(initial=...)'s initial adapter is folded into the weights"),
    ("init layers", lambda e: train(e, initial=e["face"], layers="unet"),
     "TrainJob(layers=...) picks the layers of an adapter trained from scratch, and TrainJob(initial=...)'s LoRA "
     "trains on the initial adapter's own layers: leave layers= out"),
    ("init space", lambda e: train(e, initial=e["face"], space="lora"), "leave space= out"),
    ("adapter text encoder", lambda e: train(e, train_text_encoder=True),
     "TrainJob(train_text_encoder=...) only applies with TrainJob(full=True)"),
    ("subjects and images", lambda e: train(e, subjects=e["tmp"] / "refs"),
     "TrainJob(subjects=...) and TrainJob(images=...) both name what to train"),
    ("no images", lambda e: subject_sets(TrainJob(model=e["model"], images=[]), 32),
     "no reference images: pass TrainJob(images=[FILE_OR_FOLDER]) (or TrainJob(subjects=FOLDER))"),
    ("subjects missing", lambda e: subject_folders(e["tmp"] / "nope"), "TrainJob(subjects="),
    ("one subject", lambda e: train(e, images=[], subjects=e["tmp"] / "two", full=True), "use TrainJob(images=...)"),
    ("train resolution", lambda e: train(e, resolution=12), "TrainJob(resolution=...) must be a positive multiple"),
    ("train fp16 cpu", lambda e: train(e, device="cpu", dtype="fp16"),
     "dtype='fp16' on a CPU: CPUs do not train in fp16 (no fast kernels, overflowing gradients); use dtype='fp32' "
     "('auto' picks it on a CPU)"),
    ("load dtype", lambda e: resolve_dtype("half", torch.device("cpu")),
     "dtype must be 'auto', 'fp32', 'fp16' or 'bf16'; got 'half'; did you mean fp16?"),
    ("generate steps", lambda e: check_config(GenerateConfig("a", steps=0)),
     "GenerateConfig(steps=...) must be at least 1 with the ddim scheduler, got 0"),
    ("generate guidance", lambda e: check_config(GenerateConfig("a", guidance=-1)),
     "GenerateConfig(guidance=...) must be 0 or more"),
    ("generate guidance nan", lambda e: check_config(GenerateConfig("a", guidance=float("nan"))),
     "GenerateConfig(guidance=...) must be a finite number"),
    ("generate batch", lambda e: check_config(GenerateConfig("a", batch=0)),
     "GenerateConfig(batch=...) must be at least 1"),
    ("generate resolution", lambda e: check_config(GenerateConfig("a", resolution=12)),
     "GenerateConfig(resolution=...) must be a positive multiple of 8, got 12"),
    ("resolution alone", lambda e: check_resolution(12), "resolution must be a positive multiple of 8, got 12"),
    ("personalize export", lambda e: check_job(person(e, export=["kohyaa"])),
     "unknown PersonalizeJob(export=...) format 'kohyaa'"),
    ("personalize rank", lambda e: check_job(person(e, rank=0)), "PersonalizeJob(rank=...) must be >= 1, got 0"),
    ("personalize only and no hyper", lambda e: check_job(person(e, only_hyper=True, no_hyper=True)),
     "PersonalizeJob(only_hyper=True) keeps the prediction and PersonalizeJob(no_hyper=True) drops it"),
    ("personalize save dtype", lambda e: check_job(person(e, save_dtype="half")),
     "PersonalizeJob(save_dtype=...) must be one of"),
    ("personalize preview steps", lambda e: check_job(person(e, preview_steps=0)),
     "PersonalizeJob(preview_steps=...) must be >= 1, got 0"),
    ("personalize preview off", lambda e: check_job(person(e, preview=False, preview_steps=5)),
     "PersonalizeJob(preview_steps=...) shapes the preview, which PersonalizeJob(preview=False) skips"),
    ("personalize iterations", lambda e: check_job(person(e, iterations=0)), "PersonalizeJob(iterations=...) must"),
    ("personalize crop margin", lambda e: check_job(person(e, crop_margin=-1)), "PersonalizeJob(crop_margin=...)"),
    ("personalize face index", lambda e: check_job(person(e, face_index=-1)), "PersonalizeJob(face_index=...)"),
    ("personalize crop off", lambda e: check_crop_flags(person(e, crop=False, face_index=1)),
     "PersonalizeJob(face_index=...) picks the face to crop, and PersonalizeJob(crop=False) turns cropping off"),
    ("personalize only hyper steps", lambda e: check_job(person(e, only_hyper=True, rank=8)),
     "PersonalizeJob(rank=...) shapes the fast finetune, which PersonalizeJob(only_hyper=True) skips"),
    # 0 steps (the bench's only-hyper rows) spares steps only, not a rank never trained but recorded (CW2 K08)
    ("personalize only hyper zero steps", lambda e: check_job(person(e, only_hyper=True, steps=0, rank=8)),
     "PersonalizeJob(rank=...) shapes the fast finetune, which PersonalizeJob(only_hyper=True) skips"),
    ("personalize token", lambda e: check_job(person(e, token="")), "PersonalizeJob(token=...) is empty"),
    ("personalize token not a str", lambda e: check_job(person(e, token=7)), "PersonalizeJob(token=...) must be"),
    ("personalize steps", lambda e: resolve_run(person(e, steps=-1)), "PersonalizeJob(steps=...) must be >= 0"),
    ("personalize lr", lambda e: resolve_run(person(e, learning_rate=0.0)), "PersonalizeJob(learning_rate=...)"),
    ("personalize only hyper", lambda e: resolve_run(person(e, only_hyper=True)),
     "PersonalizeJob(only_hyper=True) needs a hypernetwork (PersonalizeJob(hypernet=CKPT))"),
    ("personalize iterations no hyper", lambda e: resolve_run(person(e, iterations=2)),
     "PersonalizeJob(iterations=...) sets the hypernetwork's refinement passes"),
    ("personalize describe", lambda e: resolve_run(person(e, describe=True)),
     "PersonalizeJob(describe=True): model"),
    ("personalize ti", lambda e: resolve_run(person(e, space="ti")), "run_train(TrainJob(space='ti'))"),
    ("no face", lambda e: choose_face([], None, "face.png"),
     "no face found in face.png; use a photo where the face is clearly visible"),
    ("no face in a job's photo", lambda e: load_face_image(blank_photo(e), 64, crop=True),
     "use a photo where the face is clearly visible, or pass crop=False to use the image as it is"),
    ("device", lambda e: raise_problem(device_problem("cuda:0") if not torch.cuda.is_available() else None),
     "use device='cpu'"),
]


def raise_problem(problem: str | None) -> None:
    if problem is None:
        pytest.skip("this machine has CUDA")
    raise LowdimError(problem)


@pytest.mark.parametrize("call, words", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_python_caller_is_told_the_parameter_it_passed(env, call, words):
    (env["tmp"] / "two" / "a").mkdir(parents=True)
    (env["tmp"] / "two" / "b").mkdir()
    with pytest.raises(LowdimError) as error:
        call(env)
    message = str(error.value)
    assert words in message
    assert "--" not in message, message


def test_python_hints_name_what_a_caller_can_set(env, monkeypatch):
    from lowdim_sd import face_inputs
    from lowdim_sd.face_models import FacesUnavailable
    from lowdim_sd.faces import default_several_faces_hint

    monkeypatch.setattr(face_inputs, "faces_available", lambda: False)
    with pytest.raises(FacesUnavailable) as error:  # crop=True without the faces extra: what to pass instead
        face_inputs.resolve_crop(True, env["model"])
    assert "crop=True needs face detection" in str(error.value) and "(or pass crop=False)" in str(error.value)
    assert "--" not in str(error.value)
    assert default_several_faces_hint() == "; pick another by its index (index=N)"  # crop_face's own parameter


def test_a_relaxed_diffusers_export_warns_in_api_words(env):
    from lowdim_sd.export import export_adapter
    from lowdim_sd.workflows import run_train

    adapter = run_train(TrainJob(model=env["model"], images=[env["face"]], out=env["out"],
                                 config=TrainConfig(steps=1)), progress=False).outputs[0]
    with pytest.warns(UserWarning) as caught:
        export_adapter(adapter, env["tmp"] / "d.safetensors", "diffusers")
    line = next(str(w.message) for w in caught if "ComfyUI" in str(w.message))
    assert "export_adapter(fmt='kohya')" in line and "--" not in line


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


# The command's words for a representative few of the same checks: the flag, as before.
CLI_CASES = [
    (["train", "--steps", 0], "--steps must be >= 1, got 0"),
    (["train", "--save-dtype", "half"], "--save-dtype must be one of fp32, fp16, bf16, got 'half'; did you mean fp16?"),
    (["train", "--full", "--space", "lora"], "--space picks an adapter's weight space, and --full trains the "
                                             "model's own weights, with no adapter: leave --space out"),
    (["train", "--batch-size", 0], "--batch-size must be >= 1, got 0"),
    (["train", "--token", ""], "--token is empty: give one word, the rare word that [V] stands for, or leave "
                               "--token out"),
    (["train", "--device", "cpu", "--dtype", "fp16"], "--dtype fp16 on a CPU: CPUs do not train in fp16 (no fast "
                                                       "kernels, overflowing gradients); use --dtype fp32 (auto picks "
                                                       "it on a CPU)"),
    (["train", "--resolution", 12], "--resolution must be a positive multiple of 8, got 12"),
    (["generate", "--guidance", -1], "--guidance must be 0 or more"),
    (["personalize", "--preview-steps", 0], "--preview-steps must be >= 1, got 0"),
    (["personalize", "--no-preview", "--preview-draw", "te=0"], "--preview-draw shapes the preview, which "
                                                                 "--no-preview skips; leave it out, or drop "
                                                                 "--no-preview"),
    (["personalize", "--no-crop", "--face-index", 1], "--face-index picks the face to crop, and --no-crop turns "
                                                      "cropping off; leave one out"),
    (["personalize", "--space", "ti"], "--space ti learns token embeddings, not weights"),
]


@pytest.mark.parametrize("args, words", CLI_CASES, ids=[" ".join(map(str, a)) for a, _ in CLI_CASES])
def test_the_command_still_names_its_flags(env, capsys, monkeypatch, args, words):
    import lowdim_sd.loading

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    command, *options = args
    inputs = {"train": ["-i", env["face"], "--out", env["out"]],
              "personalize": ["-i", env["face"], "--out", env["out"]],
              "generate": ["-p", "a [V] face", "-o", env["out"]]}[command]
    code, text = run(capsys, command, "-m", env["model"], *inputs, *options)
    assert code == 1 and words in text, text


def test_an_unset_token_is_sks_for_personalize_without_a_hypernetwork(env):
    from lowdim_sd.personalize_checks import with_training_phrase

    job, _ = with_training_phrase(person(env), None)
    assert job.token == "sks"


def test_a_hypernetwork_records_sks_when_its_weights_recorded_no_token(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import lowdim.hyper.storage
    from lowdim_sd.hypertrain_io import run_metadata

    monkeypatch.setattr(lowdim.hyper.storage, "bases_checksum", lambda *args: "0")
    job = SimpleNamespace(model="m", alpha=1.0, beta=1.0, weights=[tmp_path], extra_images=[], learning_rate=1e-4,
                          seed=0, batch_size=4)
    net = SimpleNamespace(space=None, layers=None)
    metadata = run_metadata(job, {"seed": 0, "layer_set": "all", "config": {}}, net)
    assert metadata["token"] == "sks"


# TrainConfig's numeric settings, read from its annotations rather than from train_settings.NUMBERS, so that a
# setting missing from NUMBERS (whose type would then go unchecked) is caught here and not skipped with it.
NUMERIC_FIELDS = sorted(f.name for f in dataclasses.fields(TrainConfig) if f.type in ("int", "float", "float | None"))


def test_every_numeric_setting_is_type_checked():
    from lowdim_sd.train_settings import NUMBERS

    assert set(NUMBERS) == set(NUMERIC_FIELDS)


@given(name=st.sampled_from(NUMERIC_FIELDS), value=st.one_of(st.text(max_size=8), st.booleans()))
def test_a_numeric_setting_set_to_a_str_or_a_bool_is_one_line_naming_it(name, value):
    """``weight_decay="0.1"`` or ``steps=True`` from Python: one LowdimError naming the field, never a TypeError
    from a comparison, nor a bool taken for 1 or 0."""
    with pytest.raises(LowdimError) as error:
        TrainConfig(**{name: value}).validate(least_steps=1)
    message = str(error.value)
    assert message.startswith(f"TrainConfig({name}=...) must be ") and "\n" not in message, message
