"""What personalize's and bench's hypernetwork checks promise a user, for the cases the rest of the suite left
unpinned (review DX's surviving mutants): the header check before the model load (model spellings, space options,
bench rows' layer sets), --no-hyper with a backend's shipped network, the side warning before the load, the
folders given as --hypernet, and the crop record."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hypertrain_jobs import TINY_VIT

import lowdim
import lowdim_sd.personalize
from lowdim.errors import LowdimError
from lowdim.hyper.storage import read_hypernet
from lowdim_cli.main import main
from lowdim_sd.modes import resolve_layers
from lowdim_sd.personalize import PersonalizeJob
from lowdim_sd.personalize_hypernet import check_header_fits, resolve_hypernet


class ModelLoadReached(Exception):
    """Raised in place of the model load: the checks before it all passed."""


def _stop_at_the_load(*args, **kwargs):
    raise ModelLoadReached


def personalize(tiny_sd, face, hypernet, out, *more) -> list[str]:
    return ["personalize", "-m", str(tiny_sd), "-i", str(face), "--hypernet", str(hypernet), "-o", str(out),
            "--only-hyper", "--no-preview", "--no-crop", *more]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# --- the header check: which model, which space options ------------------------------------------------------


def test_a_file_recorded_for_sd15_is_accepted_for_m_sd1_5(make_hypernet):
    lidb = lowdim.get_space("lidb")
    file = read_hypernet(make_hypernet(1, model="sd15"))
    check_header_fits("sd1.5", file, lidb, resolve_layers(None, "sd1.5"))  # the alias names the same model


def test_a_model_folder_spelt_in_another_case_is_another_model(tmp_path, make_hypernet):
    (tmp_path / "Model").mkdir()
    (tmp_path / "model").mkdir()
    file = read_hypernet(make_hypernet(1, model=str(tmp_path / "Model")))
    with pytest.raises(LowdimError, match="does not fit the requested target: model: file"):
        check_header_fits(str(tmp_path / "model"), file, lowdim.get_space("lidb"), resolve_layers(None, "sd15"))


def test_a_file_recorded_through_a_link_to_the_model_folder_is_accepted_for_the_folder(tiny_sd, tmp_path,
                                                                                       make_hypernet):
    link = tmp_path / "link-to-model"
    link.symlink_to(tiny_sd)
    file = read_hypernet(make_hypernet(1, model=str(link)))
    check_header_fits(str(tiny_sd), file, lowdim.get_space("lidb"), resolve_layers(None, str(tiny_sd)))


def test_a_file_made_for_lidb_a100_is_refused_for_set_a64_before_the_model_loads(tiny_sd, face, tmp_path,
                                                                                  make_hypernet, monkeypatch, capsys):
    monkeypatch.setattr(lowdim_sd.personalize, "load_sd", _stop_at_the_load)
    hypernet = make_hypernet(1)  # lidb at its default options (a=100)
    capsys.readouterr()
    assert main(personalize(tiny_sd, face, hypernet, tmp_path / "out", "--set", "a=64")) == 1
    assert f"{hypernet} does not fit the requested target: space: file lidb" in one_error_line(capsys)


# --- bench: each row's own layer set --------------------------------------------------------------------------


def test_bench_accepts_a_unet_hypernetwork_for_its_unet_only_row(identities, tiny_sd, tmp_path, monkeypatch):
    from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet

    monkeypatch.setattr("lowdim_sd.loading.load_sd", _stop_at_the_load)
    net = HyperNetwork(HyperConfig(encoder_config=TINY_VIT, width=16, attention_heads=2), lowdim.get_space("lidb"),
                       [lowdim.LayerSpec("a.to_q", 8, 8)])
    file = save_hypernet(tmp_path / "unet.safetensors", net, {"model": str(tiny_sd), "layer_set": "unet"},
                         adapter_seed=0)
    with pytest.raises(ModelLoadReached):  # not refused from the header: the row goes on to load its model
        main(["bench", "quality", "-i", str(identities), "-m", str(tiny_sd), "-o", str(tmp_path / "out"),
              "--methods", "only-hyper-unet", "--prompt", "a [V] face", "--metrics", "tinyfaces-style",
              "--hypernet", str(file)])


# --- --no-hyper with the backend's shipped network ---------------------------------------------------------


def _resolve_with_shipped(tiny_sd, shipped: Path, no_hyper: bool):
    job = PersonalizeJob(model=str(tiny_sd), image=Path("face.png"), no_hyper=no_hyper)
    backend = SimpleNamespace(default_hypernet=shipped)
    return resolve_hypernet(job, backend, lowdim.get_space("lidb"), resolve_layers(None, str(tiny_sd)))


def test_no_hyper_never_starts_from_the_shipped_networks_prediction(tiny_sd, make_hypernet):
    shipped = make_hypernet(1)
    in_play, with_hyper, _ = _resolve_with_shipped(tiny_sd, shipped, no_hyper=False)
    assert in_play and with_hyper is not None  # the shipped network fits this target...
    assert _resolve_with_shipped(tiny_sd, shipped, no_hyper=True) == (True, None, "")  # ...yet --no-hyper drops it


# --- the side warning comes before the model load where the model's config tells the side ------------------


def test_a_file_for_another_side_is_told_before_the_model_loads(tiny_sd, face, tmp_path, make_hypernet,
                                                                monkeypatch, capsys):
    monkeypatch.setattr(lowdim_sd.personalize, "load_sd", _stop_at_the_load)
    hypernet = make_hypernet(1, resolution=32)  # the tiny model is 16 px, its folder has its config
    capsys.readouterr()
    with pytest.raises(ModelLoadReached):
        main(personalize(tiny_sd, face, hypernet, tmp_path / "out"))
    assert "learned from weights precomputed at 32 px; this run is at 16 px" in capsys.readouterr().err


# --- folders given as --hypernet -------------------------------------------------------------------------------


def test_a_folder_with_an_index_of_another_format_is_not_called_a_weight_folder(tiny_sd, face, tmp_path, capsys):
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "index.json").write_text('{"format": "something.else"}')
    capsys.readouterr()
    assert main(personalize(tiny_sd, face, folder, tmp_path / "out")) == 1
    assert "precomputed weight folder" not in one_error_line(capsys)


def test_a_checkpoint_still_being_written_is_not_offered_as_the_newest(tiny_sd, face, tmp_path, hypernet_run,
                                                                       capsys):
    (hypernet_run / "hypernet.safetensors").unlink()
    (hypernet_run / "checkpoints" / "step-000020" / "state.json").unlink()  # stopped while writing step 20
    capsys.readouterr()
    assert main(personalize(tiny_sd, face, hypernet_run, tmp_path / "out")) == 1
    newest = hypernet_run / "checkpoints" / "step-000010" / "hypernet.safetensors"
    err = one_error_line(capsys)
    assert f"the newest is {newest}" in err, err


def test_a_broken_finished_file_is_not_offered_for_the_checkpoints_folder(tiny_sd, face, tmp_path, hypernet_run,
                                                                          capsys):
    (hypernet_run / "hypernet.safetensors").write_bytes(b"not a hypernetwork")
    capsys.readouterr()
    assert main(personalize(tiny_sd, face, hypernet_run / "checkpoints", tmp_path / "out")) == 1
    err = one_error_line(capsys)
    assert "finished run's" not in err and "--resume" in err, err


# --- the record of the targets' pictures ------------------------------------------------------------------------


def test_a_cropped_runs_record_keeps_its_crop_margin():
    from lowdim_sd.hypernet_records import targets_pictures

    record = targets_pictures({"resolution": 32, "config": {"crop": True, "crop_margin": 0.25}})
    assert record == {"resolution": 32, "crop": True, "crop_margin": 0.25}
