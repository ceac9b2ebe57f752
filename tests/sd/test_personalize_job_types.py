"""A PersonalizeJob setting of the wrong type from Python is one line naming it, before anything loads: as
TrainConfig's are. (``crop="no"`` used to crop, the string being truthy; ``crop_margin="0.6"`` was a TypeError.)"""

from __future__ import annotations

import pytest

from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_sd import personalize as personalize_module
from lowdim_sd.personalize import PersonalizeJob, personalize

WRONG = [
    ({"crop": "no"}, "PersonalizeJob(crop=...) must be True, False or None, got 'no'"),
    ({"crop": 0}, "PersonalizeJob(crop=...) must be True, False or None, got 0"),
    ({"crop_margin": "0.6"}, "PersonalizeJob(crop_margin=...) must be a number, got '0.6'"),
    ({"rank": "4"}, "PersonalizeJob(rank=...) must be an integer, got '4'"),
    ({"rank": 2.5}, "PersonalizeJob(rank=...) must be an integer, got 2.5"),
    ({"seed": 1.5}, "PersonalizeJob(seed=...) must be an integer, got 1.5"),
    ({"seed": "1"}, "PersonalizeJob(seed=...) must be an integer, got '1'"),
    ({"bases_seed": "2"}, "PersonalizeJob(bases_seed=...) must be an integer, got '2'"),
    ({"steps": "3"}, "PersonalizeJob(steps=...) must be an integer, got '3'"),
    ({"steps": True}, "PersonalizeJob(steps=...) must be an integer, got True"),
    ({"learning_rate": "x"}, "PersonalizeJob(learning_rate=...) must be a number, got 'x'"),
    ({"batch_size": 1.0}, "PersonalizeJob(batch_size=...) must be an integer, got 1.0"),
    ({"keep_styles": "0.5"}, "PersonalizeJob(keep_styles=...) must be a number, got '0.5'"),
    ({"preview_steps": "30"}, "PersonalizeJob(preview_steps=...) must be an integer, got '30'"),
    ({"iterations": 2.0}, "PersonalizeJob(iterations=...) must be an integer, got 2.0"),
    ({"face_index": "0"}, "PersonalizeJob(face_index=...) must be an integer, got '0'"),
    ({"resolution": "32"}, "PersonalizeJob(resolution=...) must be an integer, got '32'"),
    ({"preview": "no"}, "PersonalizeJob(preview=...) must be True or False, got 'no'"),
    ({"describe": "yes"}, "PersonalizeJob(describe=...) must be True, False or None, got 'yes'"),
    ({"only_hyper": 1}, "PersonalizeJob(only_hyper=...) must be True or False, got 1"),
    ({"no_hyper": "false"}, "PersonalizeJob(no_hyper=...) must be True or False, got 'false'"),
    ({"overwrite": "yes"}, "PersonalizeJob(overwrite=...) must be True or False, got 'yes'"),
    ({"gradient_checkpointing": "on"}, "PersonalizeJob(gradient_checkpointing=...) must be True or False"),
    ({"cuda_graphs": 0}, "PersonalizeJob(cuda_graphs=...) must be True or False, got 0"),
    ({"export": 5}, "PersonalizeJob(export=...) takes a list of formats (diffusers, kohya), got 5"),
]


@pytest.fixture
def nothing_loads(monkeypatch):
    """A model load fails the test: the check must come first."""
    def load_sd(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad setting was refused")

    monkeypatch.setattr(personalize_module, "load_sd", load_sd)


@pytest.mark.parametrize("fields, words", WRONG, ids=[next(iter(case[0])) + "=" + repr(next(iter(case[0].values())))
                                                      for case in WRONG])
def test_a_setting_of_the_wrong_type_is_one_line_naming_it(tmp_path, face, nothing_loads, fields, words):
    out = tmp_path / "out"
    job = PersonalizeJob(model="tinyfaces", image=face, out=out, **fields)
    with pytest.raises(LowdimError) as error:
        personalize(job, progress=False)
    message = str(error.value)
    assert message.startswith(words), message
    assert "\n" not in message
    assert not out.exists()  # refused before the run made its folder


@pytest.mark.parametrize("fields", [{}, {"crop": None, "describe": None, "steps": None, "learning_rate": None},
                                    {"crop": False, "crop_margin": 1, "learning_rate": 1, "keep_styles": 0}])
def test_settings_of_the_right_types_pass(tmp_path, face, fields):
    from lowdim_sd.personalize_checks import check_types

    check_types(PersonalizeJob(model="tinyfaces", image=face, out=tmp_path / "out", **fields))


def test_the_command_line_still_names_its_flags(tmp_path, face):
    from lowdim_sd.personalize_checks import check_job

    with command_line(), pytest.raises(LowdimError, match=r"^--lr must be a number, got 'x'$"):
        check_job(PersonalizeJob(model="tinyfaces", image=face, out=tmp_path / "out", learning_rate="x"))
