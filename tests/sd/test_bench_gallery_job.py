"""A Python caller of ``run_quality`` hears about a bad gallery setting before the run, as the CLI does:
the gallery is drawn only at the end, after hours of work."""

from __future__ import annotations

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.bench.quality import QualityJob, check_job, run_quality


def job(tmp_path, **gallery) -> QualityJob:
    return QualityJob(identities=tmp_path / "ids", out=tmp_path / "out", methods=["base"],
                      prompts=["a [V] face", "a [V] face at night"], **gallery)


@pytest.mark.parametrize(("gallery", "said"), [
    ({"gallery_identities": 0}, "QualityJob(gallery_identities=...) must be at least 1; got 0"),
    ({"gallery_prompts": [2]}, "QualityJob(gallery_prompts=...): '2' is not a prompt number (0 to 1)"),
    ({"gallery_prompts": [0, -1]}, "QualityJob(gallery_prompts=...): '-1' is not a prompt number (0 to 1)"),
    ({"gallery_methods": ["bse"]}, "QualityJob(gallery_methods=...): unknown method(s) bse"),
])
def test_a_bad_gallery_setting_is_refused_before_the_run(tmp_path, gallery, said):
    with pytest.raises(LowdimError) as refused:
        check_job(job(tmp_path, **gallery))
    assert said in str(refused.value)
    with pytest.raises(LowdimError, match=r"^QualityJob\(gallery_"):
        run_quality(job(tmp_path, **gallery))
    assert not (tmp_path / "out").exists()  # nothing written, nothing run


def test_the_gallery_prompts_default_to_those_there_are_and_empty_means_no_gallery(tmp_path):
    default = job(tmp_path)
    check_job(default)
    assert default.gallery_prompts == [0] and default.gallery_identities == 4 and default.gallery_methods is None
    none = job(tmp_path, gallery_prompts=[])
    check_job(none)
    assert none.gallery_prompts == []
