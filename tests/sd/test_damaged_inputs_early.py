"""Damaged inputs refused early and in the right words (review ET 1, 3, 7, 9): `train --init` reads its file before
the model loads, as `precompute --init` does (a weight folder's NaN row included); a NaN row of a weight folder is
trained again by a precompute resume and refused by train-hypernet before anything lands in its -o; a cut network
file in a train-hypernet checkpoint is told as the checkpoint's other files are; and a token that is no word (an
escape code, a newline) is refused where a file's token is taken, and as generate's --token."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from safetensors import safe_open
from safetensors.torch import save_file

import lowdim
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd import workflows

pytestmark = pytest.mark.usefixtures("one_thread")
HOSTILE_TOKEN = "a\x1b[31mb\nc"  # a terminal's colour code and a newline
NOT_PRINTABLE = "'a\\x1b[31mb\\nc' holds a character that is not printable"  # as the refusal shows it, escaped


class ModelLoaded(Exception):
    """Raised in place of loading the model: every refusal here must come before it."""


def no_model_load(monkeypatch) -> None:
    def load(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr(workflows, "load_sd", load)
    monkeypatch.setattr("lowdim_sd.loading.load_sd", load)


def rewritten(source: Path, target: Path, nan: bool = False, **metadata: str) -> Path:
    """``source``'s tensors and metadata saved as ``target``: the first float tensor's first value NaN with
    ``nan``, the metadata's keys in ``metadata`` replaced."""
    with safe_open(str(source), framework="pt") as opened:
        tensors = {key: opened.get_tensor(key) for key in opened.keys()}  # noqa: SIM118 (not a dict)
        kept = {**(opened.metadata() or {}), **metadata}
    if nan:
        key = next(key for key, value in tensors.items() if value.is_floating_point() and value.numel())
        tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(target), metadata=kept)
    return target


def cut(source: Path, target: Path) -> Path:
    """The first half of ``source``'s bytes, as an interrupted copy leaves it."""
    whole = source.read_bytes()
    target.write_bytes(whole[: len(whole) // 2])
    return target


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0].removeprefix("Error: ")


# ------------------------------------------------------------------------------- train --init (ET 1)


@pytest.fixture
def train_inputs(tiny_sd, untrained_adapter, tmp_path, monkeypatch):
    """(run(init) -> (exit code, stderr), the good --init file): `lowdim train` on one picture, its model load
    replaced by ModelLoaded."""
    face = save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1, tmp_path,
                       "face")[0]
    no_model_load(monkeypatch)

    def run(init: Path, capsys) -> tuple[int, str]:
        code = main(["train", "-m", str(tiny_sd), "-i", str(face), "--init", str(init), "--steps", "1",
                     "-o", str(tmp_path / "run")])
        return code, capsys.readouterr().err

    return run, Path(untrained_adapter)


@pytest.mark.parametrize("damage", ["cut", "nan"])
def test_a_damaged_init_is_refused_in_the_readers_own_line_before_the_model_loads(train_inputs, tmp_path, capsys,
                                                                                  damage):
    run, good = train_inputs
    bad = cut(good, tmp_path / "bad.safetensors") if damage == "cut" else \
        rewritten(good, tmp_path / "bad.safetensors", nan=True)
    with pytest.raises(LowdimError) as read:  # the line every load of the file gives: one wording
        lowdim.read_adapter(bad)
    code, stderr = run(bad, capsys)  # ModelLoaded, not a refusal, if the file were read only after the load
    assert code == 1 and one_error_line(stderr) == str(read.value)
    assert ("cut short" if damage == "cut" else "holds NaN or Inf values") in stderr
    assert not (tmp_path / "run").exists()


def test_an_init_whose_token_is_no_word_is_refused_naming_the_file_before_the_model_loads(train_inputs, tmp_path,
                                                                                         capsys):
    run, good = train_inputs
    bad = rewritten(good, tmp_path / "bad.safetensors", token=HOSTILE_TOKEN)
    code, stderr = run(bad, capsys)
    line = one_error_line(stderr)
    assert code == 1 and line.startswith(f"{bad}: its token {NOT_PRINTABLE}"), line
    assert "\x1b" not in stderr


def test_a_sound_init_still_reaches_the_model_and_a_python_job_is_refused_alike(train_inputs, tiny_sd, tmp_path,
                                                                                capsys):
    run, good = train_inputs
    with pytest.raises(ModelLoaded):
        run(good, capsys)
    bad = rewritten(good, tmp_path / "nan.safetensors", nan=True)
    job = workflows.TrainJob(model=str(tiny_sd), images=[tmp_path / "face_000.png"], initial=bad, out=tmp_path / "p",
                             config=workflows.TrainConfig(steps=1))
    with pytest.raises(LowdimError, match=f"^{re.escape(str(bad))}: .*holds NaN or Inf values"):
        workflows.run_train(job, progress=False)


# ------------------------------------------------------------------------------- weight folders (ET 1, 3)


@pytest.fixture
def precomputed(tiny_sd, people, tmp_path, model) -> Path:
    """A precomputed weight folder of three identities (person0 to person2), a shard each."""
    from lowdim_sd.precompute import PrecomputeJob, precompute
    from lowdim_sd.train import TrainConfig

    out = tmp_path / "w"
    precompute(PrecomputeJob(model=str(tiny_sd), identities=people, out=out, config=TrainConfig(steps=1),
                             batch_subjects=1, crop=False), progress=False, model=model)
    return out


def nan_row(folder: Path, name: str) -> str:
    """A NaN written into identity ``name``'s row of ``folder``; its shard's name."""
    entry = next(e for e in json.loads((folder / "index.json").read_text())["identities"] if e["name"] == name)
    shard = folder / entry["shard"]
    rewritten(shard, folder.parent / "nan.safetensors", nan=True)
    shutil.move(folder.parent / "nan.safetensors", shard)
    return entry["shard"]


@pytest.fixture
def nan_folder(precomputed) -> tuple[Path, str]:
    """(the precomputed folder with a NaN in person1's row, that row's shard)."""
    return precomputed, nan_row(precomputed, "person1")


def test_a_precompute_resume_trains_a_nan_row_again_naming_its_shard(tiny_sd, people, nan_folder, model):
    from lowdim_sd.precompute import PrecomputeJob, precompute, read_index
    from lowdim_sd.train import TrainConfig
    from lowdim_sd.weight_dataset import WeightDataset

    out, shard = nan_folder
    job = PrecomputeJob(model=str(tiny_sd), identities=people, out=out, config=TrainConfig(steps=1),
                        batch_subjects=1, crop=False)
    with pytest.warns(UserWarning, match=rf"^{re.escape(str(out / shard))}: tensor '.*' holds NaN or Inf values "
                                         rf"in row 0 \(identity 'person1'\); training it again$"):
        result = precompute(job, progress=False, model=model)
    assert result.trained == ["person1"] and result.skipped == ["person0", "person2"]
    entry = {e["name"]: e for e in read_index(out)["identities"]}["person1"]
    assert entry["shard"] != shard and entry["generation"] == 1
    data = WeightDataset(out)
    for number in range(len(data.names)):  # every row reads as finite now
        data.weights(number)
    assert precompute(job, progress=False, model=model).trained == []  # done: the next resume keeps it


def test_train_hypernet_refuses_a_nan_row_before_writing_into_its_out(precomputed, tmp_path):
    """The NaN row is a held-out identity's, which the run would read only when it first validates."""
    from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it

    from lowdim_sd.hypertrain import train_hypernet
    from lowdim_sd.hypertrain_io import split_identities

    out = tmp_path / "h"
    _, (held_out,) = split_identities(["person0", "person1", "person2"], job(precomputed, out), out)
    shard = nan_row(precomputed, held_out)
    with pytest.raises(LowdimError) as error:
        train_hypernet(job(precomputed, out, steps=2, alpha=0.0), progress=False)
    assert not out.exists() or sorted(path.name for path in out.iterdir()) == []  # no split.json: nothing half-made
    assert re.match(rf"{re.escape(str(precomputed / shard))}: tensor '.*' holds NaN or Inf values in row 0 "
                    rf"\(identity '{held_out}'\); refusing it \(rerun the lowdim precompute that made "
                    rf"{re.escape(str(precomputed))} into it: it trains such identities again\)$", str(error.value)), \
        str(error.value)


def test_precompute_init_from_a_weight_folder_with_a_nan_row_is_refused_before_the_model_loads(
        tiny_sd, people, nan_folder, tmp_path, monkeypatch):
    from lowdim_sd.precompute import PrecomputeJob, precompute
    from lowdim_sd.train import TrainConfig

    folder, shard = nan_folder
    no_model_load(monkeypatch)
    job = PrecomputeJob(model=str(tiny_sd), identities=people, out=tmp_path / "again", config=TrainConfig(steps=1),
                        batch_subjects=1, crop=False, init=folder)
    with pytest.raises(LowdimError, match=rf"^{re.escape(str(folder / shard))}: tensor '.*' holds NaN or Inf values "
                                          rf"in row 0 \(identity 'person1'\)"):
        precompute(job, progress=False)


# ------------------------------------------------------------------------------- a cut checkpoint (ET 7)


def test_a_cut_network_in_a_hypernet_checkpoint_says_to_resume_from_the_older_one(weight_folders, tmp_path):
    from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it

    from lowdim_sd.hypertrain import train_hypernet

    weights = weight_folders(tmp_path, "w", 4, seed=9)
    out = tmp_path / "h"
    train_hypernet(job(weights, out, steps=4, alpha=0.0, keep_checkpoints=2), progress=False)
    network = out / "checkpoints" / "step-000004" / "hypernet.safetensors"
    cut(network, tmp_path / "cut.safetensors")
    shutil.move(tmp_path / "cut.safetensors", network)
    with pytest.raises(LowdimError) as error:
        train_hypernet(job(weights, out, steps=6, alpha=0.0, keep_checkpoints=2, resume=True), progress=False)
    line = str(error.value)
    assert line.startswith(f"{network}: a .safetensors file cut short"), line
    assert line.endswith("delete the checkpoint folder step-000004 to resume from step-000002"), line
    assert "download" not in line


# ------------------------------------------------------------------------------- tokens that are no word (ET 9)


def test_generate_refuses_an_adapter_whose_token_is_no_word_before_the_model_loads(tiny_sd, untrained_adapter,
                                                                                   tmp_path, capsys, monkeypatch):
    bad = rewritten(Path(untrained_adapter), tmp_path / "bad.safetensors", token=HOSTILE_TOKEN)
    no_model_load(monkeypatch)
    code = main(["generate", "-m", str(tiny_sd), "-a", str(bad), "-p", "a [V] face", "--steps", "1",
                 "-o", str(tmp_path / "g")])
    stderr = capsys.readouterr().err
    line = one_error_line(stderr)
    assert code == 1 and line.startswith(f"{bad}: its token {NOT_PRINTABLE}"), line
    assert "\x1b" not in stderr


def test_attaching_an_adapter_whose_token_is_no_word_is_refused_and_adds_nothing(untrained_adapter, tmp_path, model):
    from lowdim_sd.generate import attach_adapters, detach_adapters

    bad = rewritten(Path(untrained_adapter), tmp_path / "bad.safetensors", token="sks\nperson")
    with pytest.raises(LowdimError, match=f"^{re.escape(str(bad))}: its token 'sks\\\\nperson' holds a character"):
        attach_adapters(model, [bad])
    assert lowdim.Adapters(model.modules).names() == []
    assert attach_adapters(model, [Path(untrained_adapter)]) == ["zwx"]  # a file's own word still comes through
    detach_adapters(model)
    # Two printable words: what lowdim.save_adapter(token="sks person") writes, and such files loaded before (EX 1)
    spaced = rewritten(Path(untrained_adapter), tmp_path / "spaced.safetensors", token="sks person")
    assert attach_adapters(model, [spaced]) == ["sks person"]
    detach_adapters(model)


def test_show_names_a_token_the_commands_refuse_as_its_problem_and_gives_no_use_line(untrained_adapter, tmp_path):
    from lowdim_sd.file_info import describe

    bad = rewritten(Path(untrained_adapter), tmp_path / "bad.safetensors", token=HOSTILE_TOKEN)
    shown = describe(bad)
    assert dict(shown.rows)["problem"].startswith("its token 'a\\x1b[31mb\\nc' holds a character that is not")
    assert shown.use == ""
    spaced = describe(rewritten(Path(untrained_adapter), tmp_path / "spaced.safetensors", token="sks person"))
    assert "problem" not in dict(spaced.rows) and spaced.use.startswith("lowdim generate")


@pytest.mark.parametrize("token", [HOSTILE_TOKEN, "two words", " sks", ""])
def test_generate_token_is_checked_as_train_token_is(tiny_sd, tmp_path, capsys, monkeypatch, token):
    no_model_load(monkeypatch)
    code = main(["generate", "-m", str(tiny_sd), "-p", "a [V] face", "--steps", "1", "--token", token,
                 "-o", str(tmp_path / "g")])
    stderr = capsys.readouterr().err
    line = one_error_line(stderr)
    assert code == 1 and line.startswith("--token "), line
    assert "\x1b" not in stderr and not (tmp_path / "g").exists()


def test_a_generate_config_token_that_is_no_word_is_refused_from_python(model):
    from lowdim_sd.generate import GenerateConfig, generate

    with pytest.raises(LowdimError, match=r"^GenerateConfig\(token=\.\.\.\) must be one word of printable letters"):
        generate(model, GenerateConfig(prompts=["a [V] face"], steps=1, token=HOSTILE_TOKEN))


def test_export_refuses_an_adapter_whose_token_is_no_word_and_writes_nothing(untrained_adapter, tmp_path, capsys):
    bad = rewritten(Path(untrained_adapter), tmp_path / "bad.safetensors", token=HOSTILE_TOKEN)
    out = tmp_path / "shared.safetensors"
    code = main(["export", str(bad), "-f", "kohya", "-o", str(out)])
    line = capsys.readouterr().err.strip()
    assert code == 1 and line.startswith(f"Error: {bad}: its token {NOT_PRINTABLE}"), line
    assert not out.exists()  # the escape code never reaches a file made to be shared
