"""`lowdim bench quality` resumed with other settings: each setting settings.json records is compared, and a resume
changing any one of them is refused naming it (review CD 1). The prompts are compared in order: result k holds
prompt k's scores, drawn from seed + k, so the same prompts reordered are other settings. The dtype is compared as
the run computes in (what --dtype auto resolves to on its --device), not as typed (FDJ)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.bench.quality import QualityJob, prepare, settings

PROMPTS = ["a [V] face", "a [V] face at night"]


def first_job(tiny_sd, identities, out) -> QualityJob:
    return QualityJob(identities=identities, model=str(tiny_sd), out=out, methods=["base"],
                      metrics=["tinyfaces-style"], prompts=list(PROMPTS), sample_steps=2)


def other_model(tmp_path, tiny_sd) -> str:
    link = tmp_path / "another-sd"  # the same weights under another name: another --model all the same
    link.symlink_to(tiny_sd, target_is_directory=True)
    return str(link)


# One change per setting settings.json records: (setting, the changed job's fields).
CHANGES = {
    "model": lambda tmp_path, tiny_sd: {"model": other_model(tmp_path, tiny_sd)},
    "prompts reordered": lambda tmp_path, tiny_sd: {"prompts": PROMPTS[::-1]},
    "prompts": lambda tmp_path, tiny_sd: {"prompts": [PROMPTS[0], "a [V] face in a city"]},
    "metrics": lambda tmp_path, tiny_sd: {"metrics": ["tinyfaces-image"]},
    "token": lambda tmp_path, tiny_sd: {"token": "xqz"},
    "seed": lambda tmp_path, tiny_sd: {"seed": 1},
    "sample_steps": lambda tmp_path, tiny_sd: {"sample_steps": 3},
    "guidance": lambda tmp_path, tiny_sd: {"guidance": 7.0},
    "dtype": lambda tmp_path, tiny_sd: {"dtype": "bf16"},
}


def test_every_recorded_setting_has_a_resume_case_below(tiny_sd, identities, tmp_path):
    recorded = set(settings(first_job(tiny_sd, identities, tmp_path / "bench"))) - {"version"}
    assert recorded == {change.split()[0] for change in CHANGES}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_resume_changing_one_setting_is_refused_naming_it(tiny_sd, identities, tmp_path, monkeypatch, change):
    from lowdim_sd import devices

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)  # bf16 then passes the dtype check on any CPU
    out = tmp_path / "bench"
    prepare(first_job(tiny_sd, identities, out))
    prepare(first_job(tiny_sd, identities, out))  # the same settings: resumed
    changed = dataclasses.replace(first_job(tiny_sd, identities, out), **CHANGES[change](tmp_path, tiny_sd))
    setting = change.split()[0]
    with pytest.raises(LowdimError, match=rf"holds results made with other settings \({setting}\); use another "
                                          rf"--out or delete it"):
        prepare(changed)


@pytest.mark.parametrize(("flags", "setting"), [(["--guidance", "7"], "guidance"),
                                                (["--prompt", PROMPTS[1], "--prompt", PROMPTS[0]], "prompts")],
                         ids=["guidance", "prompts reordered"])
def test_the_command_refuses_another_guidance_or_prompt_order_in_one_line_before_any_task(
        tiny_sd, identities, tmp_path, capsys, monkeypatch, flags, setting):
    from lowdim_sd.bench import quality

    out = tmp_path / "bench"
    prepare(first_job(tiny_sd, identities, out))  # the settings.json a run of the command below writes
    monkeypatch.setattr(quality, "run_task", lambda job, task: pytest.fail("ran a task before the refusal"))
    prompts = [] if "--prompt" in flags else [flag for prompt in PROMPTS for flag in ("--prompt", prompt)]
    code = main(["bench", "quality", "-i", str(identities), "-m", str(tiny_sd), "-o", str(out), "--methods", "base",
                 "--metrics", "tinyfaces-style", "--sample-steps", "2", *prompts, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"Error: {out} holds results made with other settings ({setting}); use another --out or "
                   f"delete it"]


def with_cuda(monkeypatch) -> None:
    """A machine with one CUDA device, as far as choosing a device and a dtype goes (no model loads in prepare)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize(("before", "after"), [("fp32", "auto"), ("auto", "fp32")])
def test_a_resume_on_a_cpu_giving_auto_for_fp32_or_back_resumes(tiny_sd, identities, tmp_path, before, after):
    out = tmp_path / "bench"
    first = dataclasses.replace(first_job(tiny_sd, identities, out), device="cpu", dtype=before)
    prepare(first)
    assert json.loads((out / "settings.json").read_text())["dtype"] == "fp32"  # auto on a CPU is fp32
    tasks = prepare(dataclasses.replace(first, dtype=after))
    assert [task.method for task in tasks] == ["base"] * len(tasks) and tasks


def test_a_resume_on_another_device_computing_in_another_dtype_is_refused_naming_it(tiny_sd, identities, tmp_path,
                                                                                   monkeypatch):
    with_cuda(monkeypatch)
    out = tmp_path / "bench"
    first = dataclasses.replace(first_job(tiny_sd, identities, out), device="cuda", dtype="auto")
    prepare(first)
    prepare(dataclasses.replace(first, device="auto"))  # auto picks the CUDA device: fp16 again
    with pytest.raises(LowdimError, match=r"other settings \(dtype\); use another --out or delete it"):
        prepare(dataclasses.replace(first, device="cpu"))  # auto on the CPU is fp32: results of another precision
    assert json.loads((out / "settings.json").read_text())["dtype"] == "fp16"  # auto on CUDA is fp16


def older_folder(tiny_sd, identities, out) -> QualityJob:
    """A folder whose settings.json records --dtype auto as typed, as lowdim did before FDJ."""
    job = dataclasses.replace(first_job(tiny_sd, identities, out), dtype="auto")
    prepare(job)
    stored = out / "settings.json"
    stored.write_text(json.dumps(json.loads(stored.read_text()) | {"dtype": "auto"}))
    return job


@pytest.mark.parametrize("dtype", ["auto", "fp32"])
def test_an_older_folder_recording_auto_resumes_in_what_auto_is_here(tiny_sd, identities, tmp_path, monkeypatch,
                                                                      dtype):
    out = tmp_path / "bench"
    job = older_folder(tiny_sd, identities, out)
    assert prepare(dataclasses.replace(job, device="cpu", dtype=dtype))
    assert json.loads((out / "settings.json").read_text())["dtype"] == "auto"  # read as it is, not rewritten


def test_an_older_folder_recording_auto_refuses_another_dtype_than_auto_is_here(tiny_sd, identities, tmp_path,
                                                                                monkeypatch):
    from lowdim_sd import devices

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    out = tmp_path / "bench"
    job = older_folder(tiny_sd, identities, out)
    with pytest.raises(LowdimError, match=r"other settings \(dtype\)"):
        prepare(dataclasses.replace(job, device="cpu", dtype="bf16"))


def test_a_folder_made_in_fp16_on_cuda_is_tabulated_on_a_cpu(tiny_sd, identities, tmp_path, monkeypatch):
    from lowdim_sd.bench.quality import check_job

    with_cuda(monkeypatch)
    out = tmp_path / "bench"
    prepare(dataclasses.replace(first_job(tiny_sd, identities, out), device="cuda", dtype="auto"))
    monkeypatch.undo()  # tabulated on a machine without CUDA, where fp16 trains nothing: nothing does, tabulating
    job = QualityJob(identities=None, model=str(tiny_sd), out=out, methods=["base"])
    check_job(job, run=False)
    check_job(job, run=False)  # the command checks the job, then run_quality checks it again with the stored dtype
    assert job.dtype == "fp16"
