"""One straight path through ``lowdim personalize``: resolved once, the job never changed, the hypernetwork
file read once, one rank-relaxation path shared with ``train --init`` and the bench, and the run's flags
(--save-dtype, --resolution, --preview-steps, --model-config)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from PIL import Image
from safetensors import safe_open

import lowdim
import lowdim.hyper.storage as storage
from lowdim_cli.main import main
from lowdim_sd.loading import load_sd
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.personalize_resolve import resolve_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hypernet(make_hypernet):
    """A random hypernetwork for the tiny model, whose training weights were made with adapter seed 7."""
    return make_hypernet(1, adapter_seed=7)


def job(tiny_sd, face, out, **kwargs) -> PersonalizeJob:
    return PersonalizeJob(model=str(tiny_sd), image=face, out=out, steps=kwargs.pop("steps", 1), preview=False,
                          crop=False, **kwargs)


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def tensor_dtypes(path: Path) -> set[torch.dtype]:
    with safe_open(str(path), framework="pt") as handle:
        return {handle.get_tensor(key).dtype for key in handle.keys()}  # noqa: SIM118


# ------------------------------------------------------------------------ 15.1: resolved once, job frozen


def test_a_run_is_resolved_once_and_never_changes_the_job(tiny_sd, face, tmp_path, hypernet):
    asked = job(tiny_sd, face, tmp_path / "a", hypernet=hypernet, seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        asked.bases_seed = 1  # type: ignore[misc]
    resolved = resolve_run(asked)
    # The prediction lives in the bases of the weights' seed; --seed still seeds the LoRA and the noise.
    assert (resolved.bases_seed, resolved.seed, resolved.steps) == (7, 3, 1)
    assert resolved.space.name == "lidb" and resolved.layers.name == "unet+text"
    assert resolved.hypernet is not None and resolved.hypernet.path == hypernet
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.bases_seed = 0  # type: ignore[misc]
    written = lowdim.read_adapter(personalize(asked, progress=False).adapter)
    made = json.loads(written.metadata["extra"])
    assert made["hypernet"]["bases_seed"] == 7 and made["seed"] == 3
    # and the prediction really sits in those bases: the stack's frozen LiDB part, or the file itself under
    # --only-hyper, is rebuilt from seed 7 when the adapter is loaded
    assert written.space.config.to_dict()["components"][0]["seed"] == 7
    only = personalize(job(tiny_sd, face, tmp_path / "b", hypernet=hypernet, seed=3, steps=None, only_hyper=True),
                       progress=False)
    assert lowdim.read_adapter(only.adapter).seed == 7


def test_no_hyper_resolves_no_prediction_but_keeps_the_papers_budget(tiny_sd, face, tmp_path, hypernet):
    resolved = resolve_run(PersonalizeJob(model=str(tiny_sd), image=face, hypernet=hypernet, no_hyper=True))
    assert resolved.hypernet is None and resolved.steps == 40 and resolved.bases_seed == 0


def test_no_hyper_still_refuses_a_hypernetwork_of_a_newer_format(tiny_sd, face, tmp_path, hypernet):
    """Its prediction is dropped, but the file names the run's recipe: one of a newer lowdim is refused as ever."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(hypernet), framework="pt") as handle:
        metadata = {**(handle.metadata() or {}), "format_version": "2"}
    tensors = load_file(str(hypernet))
    newer = tmp_path / "newer.safetensors"
    save_file(tensors, str(newer), metadata)
    with pytest.raises(lowdim.LowdimError, match=r"newer.safetensors: hypernetwork format version 2; .*upgrade lowdim"):
        resolve_run(PersonalizeJob(model=str(tiny_sd), image=face, hypernet=newer, no_hyper=True))


def test_the_fast_finetune_takes_the_models_batch_and_rate_after_a_prediction_and_for_its_ablation(tiny_sd, face):
    from lowdim_sd.personalize_resolve import finetune_schedule
    from lowdim_sd.plugin import SDBackend

    tuned = SDBackend("tuned", str(tiny_sd), finetune_batch=4, finetune_lr=1e-2)
    asked = PersonalizeJob(model="tuned", image=face)
    assert finetune_schedule(asked, tuned, in_play=True) == (40, 4, 1e-2)
    assert finetune_schedule(dataclasses.replace(asked, no_hyper=True, steps=40), tuned, in_play=False) == (40, 4, 1e-2)
    # From zero (no prediction, no ablation asked) the model's 40-step recipe does not apply.
    assert finetune_schedule(asked, tuned, in_play=False) == (600, 1, 3e-3)
    assert finetune_schedule(asked, None, in_play=True) == (40, 1, 3e-3)  # a path or hub id: SD1.x defaults
    overridden = dataclasses.replace(asked, batch_size=2, learning_rate=5e-4, steps=7)
    assert finetune_schedule(overridden, tuned, in_play=True) == (7, 2, 5e-4)


def test_the_adapter_file_records_the_finetunes_batch(tiny_sd, face, tmp_path, hypernet, monkeypatch):
    import lowdim_sd.personalize as personalize_module

    seen = []
    real = personalize_module.train
    monkeypatch.setattr(personalize_module, "train", lambda *a, **k: seen.append(a[3].batch_size) or real(*a, **k))
    result = personalize(job(tiny_sd, face, tmp_path / "batch", hypernet=hypernet, batch_size=2), progress=False)
    made = json.loads(lowdim.read_adapter(result.adapter).metadata["extra"])
    assert seen == [2] and made["batch_size"] == 2


def test_a_batch_below_one_is_refused_before_the_model_loads(tiny_sd, face, tmp_path, capsys):
    code, text = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "x", "--batch-size", "0")
    assert code != 0 and "--batch-size must be >= 1, got 0" in text and not (tmp_path / "x").exists()


def test_the_hypernetwork_file_is_read_once_per_run(tiny_sd, face, tmp_path, hypernet, monkeypatch):
    import lowdim_sd.personalize_hypernet as personalize_hypernet

    reads = []
    real = storage.read_checked
    monkeypatch.setattr(storage, "read_checked", lambda path, *a, **k: reads.append(Path(path)) or real(path, *a, **k))
    personalize(job(tiny_sd, face, tmp_path / "b", hypernet=hypernet), progress=False)
    assert reads == [hypernet]
    reads.clear()
    monkeypatch.setattr(personalize_hypernet, "default_hypernet", lambda backend: hypernet)
    personalize(job(tiny_sd, face, tmp_path / "c"), progress=False)  # the shipped one: fits, so it is used
    assert reads == [hypernet]


def test_the_public_reader_gives_the_header_and_its_digest(hypernet, tiny_sd):
    read = storage.read_hypernet(hypernet)
    with safe_open(str(hypernet), framework="pt") as handle:
        header = handle.metadata()
    assert read.digest == hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:16]
    assert read.made_for == ("lidb", lowdim.get_space("lidb").config.to_dict(), "unet+text")
    assert read.metadata["adapter_seed"] == 7 and read.metadata["model"] == str(tiny_sd)
    net = storage.load_hypernet(read, layer_set="unet+text")
    assert net.metadata == read.metadata


def test_personalize_parses_no_hypernetwork_header_itself():
    source = (ROOT / "lowdim_sd" / "personalize.py").read_text()
    assert "safe_open" not in source and "json.loads" not in source


# -------------------------------------------------------------- 15.2: one relaxation path, the stack's keys


def test_personalize_train_init_and_the_bench_relax_the_rank_through_one_path(tiny_sd, face, tmp_path, hypernet,
                                                                              monkeypatch):
    from lowdim_sd.bench.methods import METHODS, personalize_subject
    from lowdim_sd.face_inputs import load_face_image
    from lowdim_sd.train import TrainConfig
    from lowdim_sd.workflows import TrainJob, run_train

    calls = []
    real = lowdim.relax_rank
    monkeypatch.setattr(lowdim, "relax_rank", lambda *a, **k: calls.append(a[3].name) or real(*a, **k))
    first = personalize(job(tiny_sd, face, tmp_path / "d", hypernet=hypernet, steps=2), progress=False)
    run_train(TrainJob(model=str(tiny_sd), images=[face], initial=first.adapter, out=tmp_path / "e",
                       config=TrainConfig(steps=2)),
              progress=False)  # a few steps each: which path relaxes the rank is decided before the first
    model = load_sd(str(tiny_sd))
    reference = load_face_image(face, model.resolution, crop=False)
    personalize_subject(model, dataclasses.replace(METHODS["no-hyper"], steps=2), reference, tmp_path / "f", None)
    assert calls == ["lora", "lora", "lora"]


def test_only_the_stack_writes_its_component_prefix():
    pattern = re.compile(r"""["']c0_|f["']c\{""")
    writers = [path.relative_to(ROOT).as_posix() for folder in ("lowdim", "lowdim_sd", "cli", "plugins")
               for path in (ROOT / folder).rglob("*.py") if pattern.search(path.read_text())]
    assert writers == ["lowdim/spaces/stack.py"]


def test_the_stack_names_and_splits_its_component_keys():
    from lowdim.spaces.stack import StackSpace

    stack = StackSpace.of([(lowdim.get_space("lidb"), 0)], lowdim.get_space("lora", rank=2))
    tensors = {"A_train": torch.zeros(1), "B_train": torch.ones(1)}
    keyed = stack.component_keys(0, tensors)
    assert set(keyed) == {"c0_A_train", "c0_B_train"}
    assert stack.component_tensors({**keyed, "c1_down": torch.ones(2)}, 0) == tensors


# ------------------------------------------------------------------------ 14.3: fp16 on disk by default


def test_personalize_writes_fp16_by_default_and_save_dtype_chooses(tiny_sd, face, tmp_path, capsys):
    small = personalize(job(tiny_sd, face, tmp_path / "g"), progress=False)
    assert tensor_dtypes(small.adapter) == {torch.float16}  # the LiDB part and the LoRA part
    assert lowdim.read_adapter(small.adapter).metadata["dtype"] == "fp16"
    full = personalize(job(tiny_sd, face, tmp_path / "h", save_dtype="fp32"), progress=False)
    assert tensor_dtypes(full.adapter) == {torch.float32}
    assert small.adapter.stat().st_size < full.adapter.stat().st_size
    code, text = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "i", "--steps", 1,
                     "--no-preview", "--no-crop", "--save-dtype", "bf16")
    assert code == 0, text
    assert tensor_dtypes(tmp_path / "i" / "adapter.safetensors") == {torch.bfloat16}
    assert f"adapter: {tmp_path / 'i' / 'adapter.safetensors'} (" in text  # whole, to copy, however long
    # The command it prints to draw the adapter runs as printed, with the flags it suggests.
    draw, hint = next(line for line in text.splitlines() if line.startswith("draw it: ")).split("  (add ")
    command, flags = shlex.split(draw.removeprefix("draw it: ")), shlex.split(hint.split(" to keep ")[0])
    assert command[:2] == ["lowdim", "generate"]
    assert flags == ["--text-encoder-scale", "0", "--adapter-start", "0.3", "--adapter-end", "0.8"]
    every_style = shlex.split(hint.split(" and ")[1].split(" too ")[0])
    assert every_style == ["--cross-attention-scale", "0.25"]
    code, drawn = run(capsys, *command[1:], *flags, *every_style, "--steps", 2, "-o", tmp_path / "drawn")
    assert code == 0 and (tmp_path / "drawn" / "grid.png").is_file(), drawn
    code, text = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", tmp_path / "j", "--save-dtype", "fp8")
    assert code == 1 and "--save-dtype" in text and "fp8" in text and "Traceback" not in text


def test_train_writes_fp16_by_default_and_save_dtype_chooses(tiny_sd, face, tmp_path, capsys):
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", face, "--steps", 1, "-o", tmp_path / "k")
    assert code == 0, text
    assert tensor_dtypes(tmp_path / "k" / "adapter.safetensors") == {torch.float16}
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", face, "--steps", 1, "-o", tmp_path / "l",
                     "--save-dtype", "fp32")
    assert code == 0, text
    assert tensor_dtypes(tmp_path / "l" / "adapter.safetensors") == {torch.float32}
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", face, "-o", tmp_path / "m", "--save-dtype", "int8")
    assert code == 1 and "--save-dtype" in text and "Traceback" not in text


# ------------------------------------------------------------ 14.4: --resolution and --preview-steps


def test_personalize_resolution_and_preview_steps(tiny_sd, face, tmp_path, monkeypatch):
    import lowdim_sd.generate as generate_module
    import lowdim_sd.personalize as personalize_module

    seen, trained_on = [], []
    real, real_train = generate_module.generate, personalize_module.train
    monkeypatch.setattr(generate_module, "generate", lambda model, config, *a, **k: seen.append(config)
                        or real(model, config, *a, **k))
    monkeypatch.setattr(personalize_module, "train", lambda model, subjects, *a, **k: trained_on.append(
        subjects[0].images.shape) or real_train(model, subjects, *a, **k))
    result = personalize(PersonalizeJob(model=str(tiny_sd), image=face, out=tmp_path / "n", steps=1, crop=False,
                                        resolution=32, preview_steps=2), progress=False)  # the model's own: 16
    assert seen[0].steps == 2 and seen[0].resolution == 32
    assert trained_on == [(1, 3, 32, 32)]  # the finetune learns the reference at that side too
    assert json.loads(lowdim.read_adapter(result.adapter).metadata["extra"])["resolution"] == 32


@pytest.mark.parametrize(("args", "message"), [
    (["--resolution", "20"], "--resolution must be a positive multiple of 8, got 20"),
    (["--resolution", "0"], "--resolution must be a positive multiple of 8, got 0"),
    (["--preview-steps", "0"], "--preview-steps must be >= 1, got 0"),
    (["--preview-draw", "1", "--preview-draw", "0"], "'0': the adapter's scale must be a positive number, got 0"),
    (["--preview-draw", "te=0@start=1"], "--adapter-start must be a fraction of the steps in [0, 1), got 1.0"),
    (["--preview-draw", "half"], "'half': not a way to draw an adapter"),
])
def test_bad_resolution_or_preview_steps_fail_before_the_model_loads(tiny_sd, face, tmp_path, capsys, args,
                                                                     message):
    code, text = run(capsys, "personalize", "-m", tmp_path / "no-such-model", "-i", face, "-o", tmp_path / "o",
                     *args)
    assert code == 1 and message in text


def test_generate_draws_at_the_resolution_asked(tiny_sd, tmp_path, capsys):
    code, text = run(capsys, "generate", "-m", tiny_sd, "-p", "a photo of a face", "--steps", 1,
                     "--resolution", 24, "-o", tmp_path / "p")
    assert code == 0, text
    assert Image.open(next((tmp_path / "p").glob("000-*.png"))).size == (24, 24)


def test_train_and_precompute_take_the_resolution(tiny_sd, face, tmp_path, capsys, monkeypatch):
    import lowdim_sd.precompute as precompute_module
    import lowdim_sd.workflows as workflows

    sizes = []
    real = workflows.load_references
    monkeypatch.setattr(workflows, "load_references", lambda paths, size: sizes.append(size) or real(paths, size))
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", face, "--steps", 1, "-o", tmp_path / "q",
                     "--resolution", 32)
    assert code == 0 and sizes == [32], text
    precompute_sizes = []
    real_train = precompute_module.train
    monkeypatch.setattr(precompute_module, "train", lambda model, subjects, *a, **k: precompute_sizes.extend(
        tuple(subject.images.shape) for subject in subjects) or real_train(model, subjects, *a, **k))
    faces = tmp_path / "ids"
    save_images(torch.rand(1, 3, 16, 16) * 2 - 1, faces / "one", "x")
    code, text = run(capsys, "precompute", "-m", tiny_sd, "-i", faces, "-o", tmp_path / "w", "--steps", 1,
                     "--no-crop", "--resolution", 32)
    assert code == 0, text
    assert json.loads((tmp_path / "w" / "index.json").read_text())["resolution"] == 32
    assert precompute_sizes == [(1, 3, 32, 32)]  # the identity's adapter trained on its image at that side


# ------------------------------------------------------------------------------ 14.1: --model-config


def test_personalize_loads_a_single_file_model_with_model_config(tiny_sd, face, tmp_path, capsys):
    from lowdim_sd.ldm_checkpoint import save_single_file

    single = save_single_file(load_sd(str(tiny_sd), device="cpu", dtype="fp32").pipe, tmp_path / "tiny.safetensors")
    code, text = run(capsys, "personalize", "-m", single, "--model-config", tiny_sd, "-i", face,
                     "-o", tmp_path / "r", "--steps", 1, "--no-preview", "--no-crop")
    assert code == 0, text
    assert (tmp_path / "r" / "adapter.safetensors").is_file()


def test_every_command_that_loads_a_model_takes_model_config():
    import typer

    from lowdim_cli.main import app

    command = typer.main.get_command(app)
    loading = ["personalize", "train", "generate", "merge", "precompute", "train-hypernet", "inspect"]
    commands = {name: command.commands[name] for name in loading}
    commands["bench quality"] = command.commands["bench"].commands["quality"]
    for name, loader in commands.items():
        options = {opt for param in loader.params for opt in param.opts}
        assert "--model-config" in options, name


def test_personalize_refuses_a_token_space_naming_the_command_that_trains_it(tiny_sd, face, tmp_path):
    with pytest.raises(lowdim.LowdimError, match=r"PersonalizeJob\(space='ti'\) learns token embeddings.*"
                                                 r"run_train\(TrainJob\(space='ti'\)\)"):
        personalize(job(tiny_sd, face, tmp_path / "ti", space="ti"), progress=False)
