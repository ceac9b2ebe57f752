"""The gallery's prompt numbers (review AU4): ``QualityJob.gallery_prompts`` is typed as what a Python caller may
pass, numbers; the command refuses a part of --gallery-prompts that is no number itself, in its own words; and
``write_reports`` holds a job's numbers to the same check as ``check_job`` (it once took ``"3"`` for 3 silently
when the check had not run)."""

from __future__ import annotations

import typing

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.bench.quality import QualityJob
from lowdim_sd.bench.report import aggregate, write_reports


def test_the_public_hint_is_a_list_of_numbers():
    assert typing.get_type_hints(QualityJob)["gallery_prompts"] == (list[int] | None)


@pytest.mark.parametrize("text", ["a", "0,a", "1.5", "3x"])
def test_the_command_refuses_a_part_that_is_no_number_in_its_words(text):
    from lowdim_cli.bench_command import prompt_numbers

    with pytest.raises(LowdimError, match=r"^--gallery-prompts: '(a|1\.5|3x)' is not a prompt number"):
        prompt_numbers(text)


def test_the_command_hands_numbers_on_as_numbers_for_the_range_check():
    from lowdim_cli.bench_command import prompt_numbers

    assert prompt_numbers("0, 3,-1") == [0, 3, -1] and prompt_numbers("") == [] and prompt_numbers(None) is None


def reports_job(tmp_path, **fields) -> tuple[QualityJob, list, list, dict]:
    job = QualityJob(identities=None, out=tmp_path / "bench", methods=["base"], prompts=["a [V] face"] * 2,
                     **fields)
    results = [{"method": "base", "identity": "id-0", "reference": "", "seconds": 1.0, "bytes": 10,
                "hypernet": None, "scores": {"i": [0.5, 0.5]}, "columns": {"i": "Ident"}, "skipped": {}}]
    rows, columns = aggregate(results, ["base"])
    return job, results, rows, columns


@pytest.mark.parametrize(("job_numbers", "given", "said"), [
    (["3"], None, "QualityJob(gallery_prompts=...): '3' is not a prompt number (0 to 1)"),
    ([7], None, "QualityJob(gallery_prompts=...): '7' is not a prompt number (0 to 1)"),
    (None, ["1"], "write_reports(gallery_prompts=...): '1' is not a prompt number (0 to 1)"),
])
def test_write_reports_refuses_what_check_job_would_before_writing(tmp_path, job_numbers, given, said):
    job, results, rows, columns = reports_job(tmp_path, gallery_prompts=job_numbers)  # check_job never ran
    with pytest.raises(LowdimError) as refused:
        write_reports(job, results, rows, columns, 2, given)
    assert str(refused.value) == said
    assert not job.out.exists()  # all or nothing


def test_write_reports_on_an_unchecked_job_uses_the_default_numbers_there_are(tmp_path):
    job, results, rows, columns = reports_job(tmp_path)
    with pytest.warns(UserWarning, match="no gallery: no identity has its reference image"):
        paths = write_reports(job, results, rows, columns, 2)  # no images: no gallery, no error over prompts 3, 5
    assert job.out / "table.md" in paths
