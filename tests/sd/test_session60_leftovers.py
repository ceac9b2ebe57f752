"""Leftovers of session 60's fixes: `lowdim train` records the thread count its bytes depend on, as personalize does;
bench quality's hypernetwork rows run DINOv2 once for the describer and the hypernetwork, as personalize does; and a
bench result records the network a model ships by its name and model, not the folder pip put it in, while a folder
written before that resumes and tabulates as it did."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from encoder_runs import backbone_runs  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim.hyper.encoder as encoder_module
from lowdim.errors import LowdimError
from lowdim.registry import Entry, get_registry
from lowdim_cli.main import main
from lowdim_sd.merged_model import read_merge_record
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE_FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


# ---------------------------------------------------------------------- train's recipe: the thread count


@pytest.fixture
def refs(tmp_path):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    return save_images(images, tmp_path / "refs", "me")[0].parent


def test_train_records_the_thread_count_in_its_adapter_and_show_prints_it(tiny_sd, refs, tmp_path, capsys):
    code = main(["train", "-m", str(tiny_sd), "-i", str(refs), "--steps", "1", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    adapter = tmp_path / "run" / "adapter.safetensors"
    recipe = json.loads(lowdim.read_adapter(adapter).metadata["extra"])
    assert recipe["threads"] == torch.get_num_threads() == 1  # one_thread
    capsys.readouterr()
    assert main(["show", "--json", str(adapter)]) == 0
    assert json.loads(capsys.readouterr().out)["fields"]["recipe"]["threads"] == 1
    assert main(["show", str(adapter)]) == 0
    shown = capsys.readouterr().out.splitlines()
    rows = [[cell.strip() for cell in line.split("\u2502") if cell.strip()] for line in shown]  # the table's cells
    assert ["recipe: threads", "1"] in rows


def test_a_full_run_records_the_thread_count_in_its_models_record(tiny_sd, refs, tmp_path):
    run_train(TrainJob(model=str(tiny_sd), images=refs, out=tmp_path / "full", full=True,
                       config=TrainConfig(steps=1, augment=False)), progress=False)
    assert read_merge_record(tmp_path / "full" / "model")["threads"] == 1
    from lowdim_sd.file_info import describe

    shown = describe(tmp_path / "full" / "model")  # show says it, as it says an adapter's
    assert ", 1 CPU thread, " in dict(shown.rows)["trained"] and shown.values["trained"]["threads"] == 1


# ------------------------------------------------------------- bench quality: DINOv2 once per photo


def tinyfaces_ready() -> bool:
    try:
        from lowdim_tinyfaces.model_files import describer_path, hypernet_path
    except ImportError:
        return False
    return describer_path().exists() and hypernet_path().exists()


@pytest.mark.skipif(not tinyfaces_ready(), reason="the TinyFaces plugin and its shipped files")
def test_a_bench_row_with_the_looks_runs_dinov2_once_and_writes_the_same_adapter(monkeypatch, tmp_path):
    from lowdim_sd.bench.methods import METHODS, personalize_subject
    from lowdim_sd.bench.quality import shipped_hypernet
    from lowdim_sd.images import load_image
    from lowdim_sd.loading import load_sd

    row, hypernet = METHODS["only-hyper-described"], shipped_hypernet("tinyfaces")

    def personalized(name: str):
        model = load_sd("tinyfaces", device="cpu", dtype="fp32")
        reference = load_image(EXAMPLE_FACE, model.resolution)
        return personalize_subject(model, row, reference, tmp_path / name, hypernet)

    runs = backbone_runs(monkeypatch)
    once = personalized("once")
    assert len(runs) == 1, "the describer's and the hypernetwork's DINOv2 each ran on the photo"
    assert once.looks.startswith(" with ")
    # The path it replaces: each encoder runs the backbone itself.
    monkeypatch.setattr(encoder_module, "features_computed_once", contextlib.nullcontext)
    twice = personalized("twice")
    assert len(runs) == 3 and all(torch.equal(tokens, runs[0]) for tokens in runs[1:])
    assert once.looks == twice.looks
    assert once.kept_file().read_bytes() == twice.kept_file().read_bytes()


# ------------------------------------------------- bench quality: the shipped network by name, older folders read


@pytest.fixture
def shipping_model(tiny_sd, make_hypernet, tmp_path, monkeypatch):
    """A registered model on the tiny pipeline that ships a hypernetwork, as TinyFaces does: (its name, the file)."""
    from lowdim_sd.plugin import SDBackend

    shipped = tmp_path / "site-packages" / "tiny_ships" / "hypernet.safetensors"
    shipped.parent.mkdir(parents=True)
    shutil.copyfile(make_hypernet(1, model="tiny-ships"), shipped)
    backend = SDBackend("tiny-ships", str(tiny_sd), default_hypernet=str(shipped))
    monkeypatch.setitem(get_registry().backends, backend.name, Entry(backend.name, backend, "test"))
    return backend.name, shipped


def bench(model: str, identities: Path, out: Path, hypernet: Path | None = None):
    from lowdim_sd.bench.quality import QualityJob, run_quality

    job = QualityJob(identities=identities, model=model, out=out, metrics=[], prompts=["a [V] face"], sample_steps=2,
                     methods=["only-hyper"], limit=2, hypernet=hypernet)
    return run_quality(job)


def results(out: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted((out / "results" / "only-hyper").glob("*.json"))}


def test_a_result_records_the_shipped_network_by_its_name_and_model_not_its_folder(shipping_model, identities,
                                                                                    tmp_path):
    from lowdim.hyper.storage import read_hypernet

    model, shipped = shipping_model
    out = tmp_path / "bench"
    bench(model, identities, out)
    for path in results(out).values():
        record = json.loads(path.read_text())
        assert record["hypernet"] == {"file": "hypernet.safetensors", "shipped_with": model}
        assert record["hypernet_sha256"] == read_hypernet(shipped).digest
        assert "site-packages" not in path.read_text()


def test_a_users_own_network_is_recorded_by_its_absolute_path(tiny_sd, make_hypernet, identities, tmp_path,
                                                             monkeypatch):
    mine = shutil.copyfile(make_hypernet(1), tmp_path / "mine.safetensors")
    monkeypatch.chdir(tmp_path)
    bench(str(tiny_sd), identities, tmp_path / "bench", hypernet=Path("mine.safetensors"))  # given relative
    for path in results(tmp_path / "bench").values():
        assert json.loads(path.read_text())["hypernet"] == {"file": str(mine.resolve())}


def older(path: Path, shipped: Path, digest: bool) -> None:
    """The result as a lowdim before the policy wrote it: the network by the path it was given, with its digest or,
    before results recorded one, without."""
    record = json.loads(path.read_text())
    record["hypernet"] = str(shipped)
    if not digest:
        del record["hypernet_sha256"]
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("digest", [True, False], ids=["with_digest", "before_digests"])
def test_an_older_folder_resumes_and_tabulates_beside_results_of_the_new_spelling(shipping_model, identities,
                                                                                  tmp_path, capsys, digest):
    from lowdim_sd.bench.report import aggregate

    model, shipped = shipping_model
    out = tmp_path / "bench"
    bench(model, identities, out)
    first, second = results(out).values()
    older(first, shipped, digest)  # one identity done by an older lowdim, the other left for this one
    second.unlink()
    again = bench(model, identities, out)  # the same command: not refused as another network's rows
    assert json.loads(second.read_text())["hypernet"] == {"file": "hypernet.safetensors", "shipped_with": model}
    rows, _ = aggregate(again, ["only-hyper"])  # one row, one network
    assert rows[0].identities == 2
    assert main(["bench", "quality", "-o", str(out), "--no-run"]) == 0, capsys.readouterr().err
    # Another network's older result is still refused, by its digest or by where its path leads.
    other = shutil.copyfile(shipped, tmp_path / "other.safetensors")
    record = json.loads(first.read_text())
    digests = {"hypernet_sha256": "0" * 64} if digest else {}
    first.write_text(json.dumps({**record, "hypernet": str(other), **digests}))
    second.unlink()
    with pytest.raises(LowdimError, match=r"results/only-hyper holds results made with another hypernetwork"):
        bench(model, identities, out)


def test_a_result_naming_a_file_by_a_record_of_another_shape_is_damage(tmp_path, capsys):
    from lowdim_sd.bench.stored_values import Damaged, recorded_file

    assert recorded_file({"file": "hypernet.safetensors", "shipped_with": "tinyfaces"}, "hypernet")
    assert recorded_file("/home/alice/hyper.safetensors", "hypernet")  # an older result's path
    for value in ({"file": 5}, {"shipped_with": "tinyfaces"}, {"file": "h", "url": "x"}, 5):
        with pytest.raises(Damaged, match="hypernet is "):
            recorded_file(value, "hypernet")


def test_a_row_of_a_result_by_another_networks_path_and_one_by_the_new_spelling_is_refused(shipping_model, tmp_path):
    from lowdim_sd.bench.report import aggregate

    model, shipped = shipping_model

    def record(identity: str, hypernet) -> dict:
        return {"method": "ours", "identity": identity, "seconds": 1.0, "bytes": 1, "hypernet": hypernet,
                "scores": {"m": [1.0]}, "columns": {"m": "M"}}

    new = record("b", {"file": "hypernet.safetensors", "shipped_with": model})
    assert aggregate([record("a", str(shipped)), new], ["ours"])[0][0].identities == 2
    with pytest.raises(LowdimError, match="different hypernetworks"):
        aggregate([record("a", str(tmp_path / "other.safetensors")), new], ["ours"])
