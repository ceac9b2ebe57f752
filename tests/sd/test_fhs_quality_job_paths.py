"""`QualityJob`'s paths given as a str from Python, as a script writes them, run as the CLI's Paths do (FHS 4):
``QualityJob(hypernet="h.safetensors")`` was an AttributeError traceback from the first check reading the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.bench.quality import QualityJob, run_quality

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_hypernetwork_given_as_a_str_runs_its_rows(tiny_sd, identities, tmp_path, quick_methods, make_hypernet):
    hypernet = shutil.copyfile(make_hypernet(1), tmp_path / "given.safetensors")
    out = tmp_path / "bench"
    job = QualityJob(identities=str(identities), model=str(tiny_sd), out=str(out), metrics=[],
                     prompts=["a [V] face"], sample_steps=2, methods=["only-hyper", "base"], limit=1,
                     hypernet=str(hypernet))
    done = run_quality(job)
    assert isinstance(job.hypernet, Path) and isinstance(job.identities, Path) and isinstance(job.out, Path)
    assert {row["method"] for row in done} == {"only-hyper", "base"}
    hyper_row = next(row for row in done if row["method"] == "only-hyper")
    assert Path(hyper_row["hypernet"]["file"]) == hypernet.resolve()  # the file given, as a Path would record it
    assert (out / "results" / "only-hyper").is_dir()


def test_a_path_field_of_another_type_is_one_line():
    with pytest.raises(LowdimError, match=r"^QualityJob: hypernet= takes a path \(a str or Path\), got a int$"):
        QualityJob(identities=None, hypernet=5)  # type: ignore[arg-type]  # what a script may pass
