"""A CLI ``lowdim personalize -o OUT/NAME`` into a running ``lowdim ui --out OUT``, NAME being the one the ui
claimed for the run in flight (review AQ, not reached there): the ui's last rename failed with a raw
"[Errno 39] Directory not empty" and then removed its own finished run; onto a folder the CLI had only just
made, the rename took that folder, and the CLI run wrote into the ui's. Now the ui's run takes the next free
name, and the CLI's folder is left as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowdim_sd.ui.run_folders import PARTIAL, list_runs, publish_run
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


def finished_run(out: Path, name: str) -> Path:
    """The ui's hidden folder of a finished run, claimed as ``name``."""
    work = out / f".{name}{PARTIAL}"
    work.mkdir(parents=True)
    (work / "adapter.safetensors").write_bytes(b"the ui run's adapter")
    return work


def test_a_folder_filled_between_the_check_and_the_rename_keeps_both_runs(tmp_path, monkeypatch):
    """The CLI makes OUT/NAME and writes into it in the instant between publish_run's look and its rename: the
    OS refuses the rename onto a folder that is not empty, and the ui's run takes the next name."""
    work, cli = finished_run(tmp_path, "run"), tmp_path / "run"
    real_exists = Path.exists

    def cli_writes_right_after_the_check(path: Path, *args, **kwargs) -> bool:
        found = real_exists(path, *args, **kwargs)
        if path == cli and not found:
            cli.mkdir()
            (cli / "adapter.safetensors").write_bytes(b"the CLI run's adapter")
        return found

    monkeypatch.setattr(Path, "exists", cli_writes_right_after_the_check)
    assert publish_run(work, tmp_path, "run") == "run-2"
    monkeypatch.undo()
    assert (tmp_path / "run-2" / "adapter.safetensors").read_bytes() == b"the ui run's adapter"
    assert (cli / "adapter.safetensors").read_bytes() == b"the CLI run's adapter" and not work.exists()


def test_a_name_another_run_has_claimed_is_passed_over(tmp_path):
    """Another server on the same --out claimed NAME-2 for its run in flight: this one publishes as NAME-3, and
    that run's claim stays for it to publish into."""
    (tmp_path / "run").mkdir()  # taken since this run's claim
    other = tmp_path / f".run-2{PARTIAL}"
    other.mkdir()
    work = finished_run(tmp_path, "run")
    assert publish_run(work, tmp_path, "run") == "run-3"
    assert (tmp_path / "run-3" / "adapter.safetensors").is_file() and other.is_dir()
    assert not (tmp_path / "run-2").exists()
