"""One policy for the paths lowdim's files record (docs/sd.md, "Paths in files"): an adapter records a user's
hypernetwork by its absolute path and the one a model ships by its name and that model, not by the folder pip put
it in; `lowdim show` says which; a file made to be shared (`lowdim export`, every format) records a local base
model by its folder's name, never the user's home folder layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from safetensors import safe_open
from torch import nn

import lowdim
from lowdim.hyper.storage import read_hypernet
from lowdim_cli.main import main
from lowdim_sd.export import export_adapter
from lowdim_sd.file_info import describe
from lowdim_sd.personalize_hypernet import default_hypernet
from lowdim_sd.personalize_recipe import recipe
from lowdim_sd.registered_models import registered_entry

pytestmark = pytest.mark.usefixtures("one_thread")
HOME_MODEL = "/home/alice/models/my-sd"  # a local model folder as an adapter records it: absolute


@pytest.fixture(scope="module")
def shipped():
    """TinyFaces' own hypernetwork, where its package lies, read as personalize reads it."""
    path = default_hypernet(registered_entry("tinyfaces").value)
    assert path is not None and path.is_file()
    return read_hypernet(path)


def _hypernet_in_recipe(hypernet) -> dict:
    """The ``hypernet`` record of the recipe an adapter predicted by ``hypernet`` stores (``recipe`` reads these)."""
    job = SimpleNamespace(iterations=None, image=Path("face.png"), no_hyper=False, crop_margin=0.6, face_index=None,
                          resolution=None, keep_styles=0, rank=1)
    run = SimpleNamespace(job=job, hypernet=hypernet, bases_seed=0, only_hyper=True, seed=0, crop=False,
                          prompt="a [V] face", describer=None)
    return recipe(run)["hypernet"]


def test_the_shipped_network_is_recorded_by_its_name_and_model_not_the_package_folder(shipped, tmp_path):
    made = _hypernet_in_recipe(shipped)
    assert made == {"file": "hypernet.safetensors", "shipped_with": "tinyfaces", "digest": shipped.digest,
                    "iterations": shipped.stored["hyper_config"]["iterations"], "bases_seed": 0}
    assert str(Path(shipped.path).parent) not in json.dumps(made)
    link = tmp_path / "mine.safetensors"  # a --hypernet that leads to the shipped file is that file
    link.symlink_to(shipped.path)
    assert _hypernet_in_recipe(read_hypernet(link)) == made


def test_a_users_network_stays_absolute_even_as_a_copy_of_the_shipped_one(shipped, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    shutil.copyfile(shipped.path, tmp_path / "nets" / "hypernet.safetensors")  # the user's own file now
    made = _hypernet_in_recipe(read_hypernet(Path("nets") / "hypernet.safetensors"))
    assert made["file"] == str((tmp_path / "nets" / "hypernet.safetensors").resolve()) and "shipped_with" not in made
    assert made["digest"] == shipped.digest  # the same network, told apart only by where it is
    assert _hypernet_in_recipe(shipped)["file"] == "hypernet.safetensors"


def _adapter(path: Path, hypernet: dict, base_model: str = "tinyfaces") -> Path:
    """A LiDB adapter on one UNet layer whose recipe names ``hypernet`` as personalize records it."""
    model = nn.ModuleDict({"unet": nn.ModuleDict({"time_embedding": nn.ModuleDict({"linear_1": nn.Linear(6, 5)})})})
    lowdim.inject(model, lowdim.get_space("lidb", a=4, b=3), ["unet.time_embedding.linear_1"], seed=3)
    made = {"made_by": "lowdim personalize", "image": "face.png", "hypernet": hypernet, "only_hyper": True}
    return lowdim.save_adapter(path, model, dtype="fp16", base_model=base_model, token="zwx", extra=made)


def _compact(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def test_show_names_the_shipped_network_by_its_model_and_a_users_or_an_older_record_by_its_path(
        shipped, tmp_path, capsys):
    own = tmp_path / "nets" / "hypernet.safetensors"
    records = {"shipped": _hypernet_in_recipe(shipped),
               "user": {"file": str(own), "digest": "0123456789abcdef", "iterations": 2, "bases_seed": 0},
               # what lowdim wrote before: the shipped network by the path it had, the digest as sha256
               "older": {"file": str(shipped.path), "sha256": "ddf47fe18a97408b", "iterations": None, "bases_seed": 0}}
    rows = {name: dict(describe(_adapter(tmp_path / f"{name}.safetensors", record)).rows)["recipe: hypernet"]
            for name, record in records.items()}
    rest = {"bases_seed": 0, "digest": shipped.digest, "iterations": records["shipped"]["iterations"]}
    assert rows["shipped"] == f"the network shipped with tinyfaces (hypernet.safetensors) {_compact(rest)}"
    assert rows["user"] == _compact(records["user"]) and str(own) in rows["user"]
    assert rows["older"] == _compact(records["older"])  # as shown before
    assert main(["show", str(tmp_path / "shipped.safetensors")]) == 0
    assert "the network shipped with tinyfaces" in capsys.readouterr().out
    assert main(["show", str(tmp_path / "shipped.safetensors"), "--json"]) == 0  # for programs: the record itself
    assert json.loads(capsys.readouterr().out)["fields"]["recipe"]["hypernet"] == records["shipped"]


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


@pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")
@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_an_exported_lora_names_a_local_base_model_by_its_folder_alone(tmp_path, fmt):
    adapter = _adapter(tmp_path / "me.safetensors", {"file": "/home/alice/nets/h.safetensors"}, base_model=HOME_MODEL)
    meta = _metadata(export_adapter(adapter, tmp_path / f"me-{fmt}.safetensors", fmt))
    assert meta["base_model"] == "my-sd"
    assert not [key for key, value in meta.items() if "/home/alice" in value or str(tmp_path) in value]
    spellings = {"~/models/my-sd": "my-sd", "C:\\Users\\alice\\my-sd": "my-sd", "./models/my-sd/": "my-sd",
                 "/home/alice/models/v1-5.safetensors": "v1-5.safetensors"}  # older files, other systems, a file
    for recorded, shared in spellings.items():
        source = _adapter(tmp_path / "other.safetensors", {}, base_model=recorded)
        assert _metadata(export_adapter(source, tmp_path / f"other-{fmt}.safetensors", fmt))["base_model"] == shared
    for kept in ("tinyfaces", "someone/sd-model"):  # a registered name or a hub id stays as it is
        source = _adapter(tmp_path / "kept.safetensors", {}, base_model=kept)
        assert _metadata(export_adapter(source, tmp_path / f"kept-{fmt}.safetensors", fmt))["base_model"] == kept


@pytest.mark.parametrize("fmt", ["diffusers", "a1111"])
def test_an_exported_embedding_names_a_local_base_model_by_its_folder_alone(tmp_path, fmt):
    encoder = nn.Module()
    encoder.embeddings = nn.Module()
    encoder.embeddings.token_embedding = nn.Embedding(10, 4)
    model = nn.ModuleDict({"text_encoder": encoder})
    targets = lowdim.LayerSet("e", ("text_encoder.embeddings.token_embedding",), types=("embedding",))
    lowdim.inject(model, lowdim.get_space("ti"), targets)
    adapter = lowdim.save_adapter(tmp_path / "ti.safetensors", model, token="zz", base_model=HOME_MODEL + "/")
    meta = _metadata(export_adapter(adapter, tmp_path / f"ti-{fmt}.safetensors", fmt))
    assert meta["base_model"] == "my-sd"
    assert not [key for key, value in meta.items() if "/home/alice" in value or str(tmp_path) in value]
