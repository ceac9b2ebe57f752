"""From Python, an "already exists" refusal and a stop's note name what the caller typed (``overwrite=True``, the
same call again, ``generate(...)``), not the CLI's ``--overwrite`` or "the same command"; under the ``lowdim``
command (``command_line()``) they stay word for word as the CLI has always said them (review AC2)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_sd import personalize_stages, runs
from lowdim_sd.personalize import PersonalizeJob, personalize

pytestmark = pytest.mark.usefixtures("one_thread")


def refusal(tmp_path: Path) -> str:
    (tmp_path / "me").mkdir()
    (tmp_path / "me" / "adapter.safetensors").write_bytes(b"earlier")
    with pytest.raises(LowdimError) as refused:
        runs.refuse_overwrite([tmp_path / "me" / "adapter.safetensors"], overwrite=False)
    return str(refused.value)


def test_the_already_exists_refusal_names_the_python_parameters(tmp_path):
    assert refusal(tmp_path) == (f"{tmp_path / 'me' / 'adapter.safetensors'}: already exists; pass overwrite=True "
                                 f"to replace it, or choose another out")


def test_the_already_exists_refusal_keeps_its_cli_words_under_the_command(tmp_path):
    with command_line():
        said = refusal(tmp_path)
    assert said.endswith("already exists; pass --overwrite to replace it, or choose another --out")


def test_personalize_called_twice_from_python_is_refused_in_python_words(tiny_sd, face, tmp_path):
    out = tmp_path / "me"
    out.mkdir()
    (out / "adapter.safetensors").write_bytes(b"an earlier run's")
    job = PersonalizeJob(model=str(tiny_sd), image=face, out=out, steps=1, preview=False, crop=False)
    with pytest.raises(LowdimError, match="already exists; pass overwrite=True to replace it, or choose another "
                                          "out$") as refused:
        personalize(job, progress=False)
    assert "--" not in str(refused.value)


@pytest.mark.parametrize("on_the_cli, rerun", [(False, "run the same call again"), (True, "rerun the same command")])
def test_a_stop_with_nothing_kept_says_how_to_start_over_in_the_readers_words(on_the_cli, rerun):
    def note() -> str:
        return runs.stop_note(KeyboardInterrupt(), 5, False, None)

    with command_line() if on_the_cli else contextlib.nullcontext():
        said = note()
    assert said == f"interrupted at step 5; nothing was kept; {rerun} to start over"
    assert f"{runs.RERUN}" == "run the same call again" and str(runs.RERUN) == "run the same call again"


def stopped_personalize(tmp_path: Path, overwrite: bool) -> str:
    out = tmp_path / "C"
    out.mkdir(exist_ok=True)
    job = SimpleNamespace(model="tinyfaces", model_config=None, out=out, export=(), preview=True, overwrite=overwrite)
    result = SimpleNamespace(adapter=out / "adapter.safetensors", subject_prompt=lambda: "a [V] face")
    return personalize_stages.stop_note(result, "preview", job, [])


@pytest.mark.parametrize("overwrite, again", [(False, "pass overwrite=True to the same call"),
                                              (True, "run the same call again")])
def test_a_stop_after_the_adapter_says_how_to_draw_it_and_start_over_from_python(tmp_path, overwrite, again):
    said = stopped_personalize(tmp_path, overwrite)
    adapter = str(tmp_path / "C" / "adapter.safetensors")
    assert (f"draw it with `generate(model, GenerateConfig(prompts=['a [V] face']), attach_adapters(model, "
            f"[{adapter!r}]))`, or {again} to start over") in said
    assert "--" not in said and "lowdim generate" not in said


@pytest.mark.parametrize("overwrite, again", [(False, "add --overwrite to the same command"),
                                              (True, "rerun the same command")])
def test_a_stop_after_the_adapter_keeps_its_cli_words_under_the_command(tmp_path, overwrite, again):
    with command_line():
        said = stopped_personalize(tmp_path, overwrite)
    adapter = tmp_path / "C" / "adapter.safetensors"
    assert said.endswith(f"draw it with `lowdim generate -m tinyfaces -a {adapter} -p 'a [V] face'`, or {again} "
                         f"to start over")


def test_a_stop_forced_while_its_checkpoint_is_written_names_the_checkpoint_that_stands(tmp_path):
    """A third Ctrl-C during the stop's own save ends it: that checkpoint is not kept, and the line says which one
    --resume continues from (or that none stands), instead of the bare 'nothing half-written' line."""
    def forced_save():
        raise KeyboardInterrupt

    last = tmp_path / "checkpoints" / "step-000100"
    with command_line():
        said = runs.stop_note(KeyboardInterrupt(), 155, False, forced_save, runs.RESUME, last=last)
        alone = runs.stop_note(KeyboardInterrupt(), 155, False, forced_save, runs.RESUME)
    assert said == ("interrupted at step 155, and again while its checkpoint was written, so it was not kept; the "
                    f"same command plus --resume continues from the last periodic one, {last}")
    assert alone == ("interrupted at step 155, and again while its checkpoint was written: nothing was kept; rerun "
                     "the same command to start over")
