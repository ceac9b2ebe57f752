"""`lowdim show` prints what a file says as text: a token or base model that reads as rich markup ("[red]") is
shown as written, not styled or swallowed (a file from someone else decides those words)."""

from __future__ import annotations

from safetensors import safe_open
from safetensors.torch import save_file

from lowdim_cli.main import main


def test_a_token_that_looks_like_markup_is_printed_as_written(embedding, tmp_path, capsys):
    with safe_open(str(embedding), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
        metadata = {**handle.metadata(), "token": "[red]vqz[/red]"}
    edited = tmp_path / "markup.safetensors"
    save_file(tensors, str(edited), metadata=metadata)
    assert main(["show", str(edited)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "[red]vqz[/red]" in shown
