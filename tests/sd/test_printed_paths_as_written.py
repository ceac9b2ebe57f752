"""The lines personalize, generate and export print after their work name the paths as the user typed them:
brackets are not rich markup ('me[v]' is not 'me'; 'x[/]y' does not crash after the files are written), ':smile:'
is no emoji, and backslashes before a bracket stay as many as written."""

from __future__ import annotations

from lowdim_cli.main import main

ODD = "me[v] x[/]y a:smile:b \\[bold]c\\\\"  # every way a name can read as markup, emoji or escape


def said(capsys) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_personalize_names_its_out_folder_as_typed(tiny_sd, face, tmp_path, capsys, one_thread):
    out = tmp_path / ODD
    code = main(["personalize", "-m", str(tiny_sd), "-i", str(face), "-o", str(out), "--steps", "1", "--no-crop",
                 "--preview-steps", "1", "--device", "cpu"])
    text = said(capsys)
    assert code == 0, text
    assert f"adapter: {out / 'adapter.safetensors'} (" in text
    assert f"wrote {out / 'preview.png'}\n" in text


def test_generate_names_its_grid_as_typed(tiny_sd, tmp_path, capsys, one_thread):
    out = tmp_path / ODD
    code = main(["generate", "-m", str(tiny_sd), "-p", "a face", "--steps", "2", "--device", "cpu", "-o", str(out)])
    text = said(capsys)
    assert code == 0, text
    assert f"wrote 1 image and {out / 'grid.png'}\n" in text


def test_export_names_the_file_it_wrote_as_typed(untrained_adapter, tmp_path, capsys):
    target = tmp_path / f"{ODD}.safetensors"
    code = main(["export", str(untrained_adapter), "-o", str(target)])
    text = said(capsys)
    assert code == 0, text
    assert f"wrote {target}\n" in text
