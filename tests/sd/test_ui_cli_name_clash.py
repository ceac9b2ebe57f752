"""A CLI ``lowdim personalize -o OUT/NAME`` into a running ``lowdim ui --out OUT``, NAME being the one the ui
claimed for the run in flight (review AQ, not reached there): the ui's last rename failed with a raw
"[Errno 39] Directory not empty" and then removed its own finished run; onto a folder the CLI had only just
made, the rename took that folder, and the CLI run wrote into the ui's. Now the ui's run takes the next free
name, and the CLI's folder is left as it is."""

from __future__ import annotations

import pytest

from lowdim_sd.ui.run_folders import list_runs
from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig


@pytest.mark.parametrize("cli_wrote", [True, False], ids=["cli-folder-with-files", "cli-folder-just-made"])
def test_a_cli_run_into_the_name_the_ui_claimed_keeps_both_runs(tmp_path, tiny_sd, face, monkeypatch, cli_wrote):
    studio = Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui"))
    real, claimed = Studio._personalize_into, []

    def cli_takes_the_name_meanwhile(self, work, name, *args):
        real(self, work, name, *args)
        claimed.append(name)
        cli = work.parent / name  # `lowdim personalize -o OUT/NAME`, typed while the ui's run trained
        cli.mkdir()
        if cli_wrote:
            (cli / "adapter.safetensors").write_bytes(b"the CLI run's adapter")

    monkeypatch.setattr(Studio, "_personalize_into", cli_takes_the_name_meanwhile)
    settings = RunSettings(model=str(tiny_sd), steps=2, crop=False, preview_steps=1)
    record = studio.personalize(face, settings)
    cli = studio.config.out / claimed[0]
    assert record.name == f"{claimed[0]}-2" and record.adapter.is_file() and record.folder.is_dir()
    assert list_runs(studio.config.out) == [record.name]
    assert sorted(path.name for path in cli.iterdir()) == (["adapter.safetensors"] if cli_wrote else [])
    if cli_wrote:
        assert (cli / "adapter.safetensors").read_bytes() == b"the CLI run's adapter"
