"""``lowdim precompute --resume`` (review AQ2): train and train-hypernet take --resume, and precompute resumes by
itself, so the flag is taken as the no-op it is and the line says how precompute resumes, instead of Click's
``No such option: --resume`` (exit 2)."""

from __future__ import annotations

from types import SimpleNamespace

import lowdim_sd.precompute as pre
from lowdim_cli.main import main


def run_precompute(monkeypatch, capsys, tmp_path, *extra: str) -> tuple[int, str, object]:
    jobs = []

    def record(job, **_):  # stands in for the training: only the job the command builds matters here
        jobs.append(job)
        return SimpleNamespace(main_process=True, processes=1, shards=[], run_trained=0, run_skipped=3,
                               index=job.out / "index.json")

    monkeypatch.setattr(pre, "precompute", record)
    code = main(["precompute", "-m", "tinyfaces", "-i", str(tmp_path / "faces"), "-o", str(tmp_path / "w"), *extra])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split()), jobs[0] if jobs else None


def test_resume_is_a_no_op_that_says_precompute_resumes_by_itself(monkeypatch, capsys, tmp_path):
    code, said, job = run_precompute(monkeypatch, capsys, tmp_path, "--resume")
    assert code == 0, said
    assert ("--resume is not needed: precompute resumes by itself; a rerun with the same -o skips the identities "
            "already done") in said
    plain_code, plain, plain_job = run_precompute(monkeypatch, capsys, tmp_path)
    assert plain_code == 0 and "--resume" not in plain
    assert job == plain_job  # the same run, with the flag or without


def test_resume_stays_out_of_the_help(capsys):
    assert main(["precompute", "--help"]) == 0
    assert "--resume" not in capsys.readouterr().out
