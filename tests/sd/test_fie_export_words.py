"""A wrong format or dtype is refused in the words of what the caller used (FIE 2): ``ExportJob(fmt=...)`` for
``checked_export(ExportJob(...))``, ``export_adapter(fmt=...)`` for ``export_adapter``, and the CLI's flags, as they
were, for ``lowdim export``."""

from __future__ import annotations

import pytest

from lowdim_cli.main import main
from lowdim_sd.export import export_adapter
from lowdim_sd.export_checks import ExportError
from lowdim_sd.export_job import ExportJob, checked_export

WRONG = [({"fmt": "nope"}, "fmt"), ({"dtype": "fp64"}, "dtype")]


@pytest.mark.parametrize(("given", "field"), WRONG)
def test_checked_export_names_the_export_jobs_field_it_was_given(untrained_adapter, tmp_path, given, field):
    with pytest.raises(ExportError) as refused:
        checked_export(ExportJob(adapter=untrained_adapter, out=tmp_path / "x.safetensors", **given))
    line = str(refused.value)
    assert f"ExportJob({field}=...)" in line, line
    assert "export_adapter" not in line  # a function this caller never called
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize(("given", "field"), WRONG)
def test_export_adapter_still_names_its_own_argument(untrained_adapter, tmp_path, given, field):
    with pytest.raises(ExportError) as refused:
        export_adapter(untrained_adapter, tmp_path / "x.safetensors", **given)
    line = str(refused.value)
    assert f"export_adapter({field}=...)" in line, line
    assert "ExportJob" not in line


@pytest.mark.parametrize(("flags", "said"), [
    (["--format", "nope"], "Error: unknown --format 'nope'; choose one of diffusers (a LoRA or an embedding, for "
                           "diffusers), kohya (a LoRA, for ComfyUI and A1111), a1111 (an embedding, for A1111 and "
                           "ComfyUI)"),
    (["--save-dtype", "fp64"], "Error: the export's dtype (--save-dtype) must be one of fp32, fp16, bf16, got 'fp64'; "
                               "did you mean fp16?"),
])
def test_the_command_line_keeps_its_flags_words(untrained_adapter, tmp_path, capsys, flags, said):
    code = main(["export", str(untrained_adapter), "-o", str(tmp_path / "x.safetensors"), *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and lines == [said]
