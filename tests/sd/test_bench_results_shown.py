"""What `lowdim bench quality` shows of a results folder someone else made: table.md's headings are this lowdim's
(no file's words become a cell, a tag or a link in it), a gallery picture that cannot be read is named and left out,
and a received folder's gallery finds its references from any working folder."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from markdown_it import MarkdownIt
from PIL import Image
from test_bench_results_checked import results_folder, tabulate

from lowdim_cli.main import main
from lowdim_sd.bench.report import aggregate, markdown

HEADER = "| Method | Identity | Style acc | s / subject | file (fp32) | n |"
HOSTILE = "Identity | <img src=x onerror=alert(1)> [click](http://evil.example) **Pwned** \x1b[31mred\x1b[0m"


def edit_all(out: Path, change) -> None:
    for path in (out / "results").glob("*/*.json"):
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))


def hostile_columns(record: dict) -> None:
    record["columns"] = {"tinyfaces-identity": HOSTILE, "rm-rf": "**Pwned** \x1b[31mred\x1b[0m"}
    record["scores"]["rm-rf"] = [0.9, 0.9]


def test_headings_are_the_registered_metrics_and_a_metric_the_settings_do_not_list_is_no_column(tmp_path, capsys):
    out = results_folder(tmp_path)
    edit_all(out, hostile_columns)
    assert tabulate(out) == 0, capsys.readouterr()
    table = (out / "table.md").read_text()
    assert table.splitlines()[0] == HEADER
    assert "rm-rf" not in table and "Pwned" not in table and "<img" not in table and "\x1b" not in table
    assert json.loads((out / "table.json").read_text())["columns"] == {"tinyfaces-identity": "Identity",
                                                                        "tinyfaces-style": "Style acc"}


def test_without_settings_the_scored_metrics_are_headed_by_their_registered_names_not_the_files(tmp_path, capsys):
    out = results_folder(tmp_path)
    edit_all(out, hostile_columns)
    (out / "settings.json").unlink()
    assert tabulate(out) == 0, capsys.readouterr()
    assert (out / "table.md").read_text().splitlines()[0] == \
        "| Method | Identity | Style acc | rm-rf | s / subject | file (fp32) | n |"


def rendered(page: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(page)


def test_every_cell_of_table_md_shows_its_text_as_itself(tmp_path):
    """A library caller's headings (or a plugin's) reach table.md escaped: one cell each, no tag, no link."""
    record = {"method": "base", "identity": "a", "reference": "", "seconds": 1.0, "bytes": 1, "hypernet": None,
              "scores": {"i": [0.5, None]}, "not_asked": {"i": 1}, "columns": {"i": HOSTILE}, "skipped": {}}
    rows, columns = aggregate([record], ["base"])
    page = markdown(rows, columns)
    html = rendered(page)
    assert len(re.findall(r"<th[ >]", html)) == 5 and len(re.findall(r"<td[ >]", html)) == 5
    assert "<img" not in html and "<a " not in html and "<strong>" not in html and "\x1b" not in page
    assert "&lt;img src=x onerror=alert(1)&gt; [click](http://evil.example) **Pwned** \\x1b[31mred" in html
    assert "[click]" in html.split("</table>", 1)[1]  # the note under the table names the metric, escaped too


def picture(path: Path, shade: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(path)
    return path


def pictured_folder(tmp_path: Path) -> Path:
    """A results folder whose two identities have their references and both rows' images."""
    out = results_folder(tmp_path)
    for identity in ("id-0", "id-1"):
        picture(tmp_path / "refs" / f"{identity}.png")
        for method in ("base", "only-hyper"):
            for k in range(2):
                picture(out / "images" / method / identity / f"{k:02d}.png", 40 * k)
    edit_all(out, lambda r: r.update(reference=str(tmp_path / "refs" / f"{r['identity']}.png")))
    return out


def gallery_rows(out: Path) -> int:
    """gallery.png's height, which grows with its rows of identities."""
    return Image.open(out / "gallery.png").height


def warnings_of(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_a_gallery_picture_that_cannot_be_read_is_named_and_the_gallery_goes_on_without_it(tmp_path, capsys):
    whole = pictured_folder(tmp_path / "whole")
    assert tabulate(whole) == 0
    two_rows = gallery_rows(whole)
    for name, damage in {"reference": lambda out, tmp: tmp / "refs" / "id-0.png",
                         "image": lambda out, tmp: out / "images" / "only-hyper" / "id-0" / "00.png"}.items():
        out = pictured_folder(tmp_path / name)
        broken = damage(out, tmp_path / name)
        broken.write_text("root:x:0:0:root:/root:/bin/bash\n")
        capsys.readouterr()
        assert tabulate(out) == 0
        said = warnings_of(capsys)
        assert f"Warning: {broken} cannot be read as a picture" in said, said
        assert (out / "gallery.png").is_file() and gallery_rows(out) < two_rows  # id-1 alone


def test_an_image_linked_from_outside_the_folder_is_left_out_with_a_note(tmp_path, capsys):
    out = pictured_folder(tmp_path)
    inside = out / "images" / "base" / "id-0" / "00.png"
    inside.unlink()
    os.symlink(picture(tmp_path / "private" / "photo.png"), inside)
    assert tabulate(out) == 0
    said = warnings_of(capsys)
    assert f"{inside} is a link to {tmp_path / 'private' / 'photo.png'}" in said, said
    assert (out / "gallery.png").is_file()


def test_no_gallery_says_whether_the_references_or_the_images_are_missing(tmp_path, capsys):
    out = pictured_folder(tmp_path)
    shutil.rmtree(tmp_path / "refs")
    assert tabulate(out) == 0
    said = warnings_of(capsys)
    assert "no gallery: no identity has its reference image where its results say" in said, said
    assert "rerun" not in said
    picture(tmp_path / "refs" / "id-0.png")
    shutil.rmtree(out / "images" / "base")
    assert tabulate(out) == 0
    said = warnings_of(capsys)
    assert "the references are there; rerun those rows to make the images" in said, said


def test_a_received_folder_finds_its_references_from_any_working_folder(tiny_sd, identities, tmp_path,
                                                                        monkeypatch, capsys):
    made = tmp_path / "made"
    made.mkdir()
    shutil.copytree(identities, made / "heldout")
    monkeypatch.chdir(made)
    assert main(["bench", "quality", "-i", "heldout", "-m", str(tiny_sd), "-o", "bench", "--methods", "base",
                 "--metrics", "tinyfaces-style", "--prompt", "a [V] face", "--sample-steps", "1",
                 "--threads", "1"]) == 0, capsys.readouterr()
    assert json.loads(Path("bench/results/base/id-0.json").read_text())["reference"] == "../heldout/id-0.png"
    received = tmp_path / "received"
    shutil.move(made, received)  # sent on: the results folder and its references, side by side as they were
    (received / "bench" / "gallery.png").unlink()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["bench", "quality", "-m", str(tiny_sd), "-o", str(received / "bench"), "--no-run"]) == 0
    assert "no gallery" not in warnings_of(capsys)
    assert (received / "bench" / "gallery.png").is_file()


def test_a_skipped_metrics_reason_is_printed_as_its_text_not_rich_markup(tmp_path, capsys):
    """A reason read from a result file holding rich's markup (`[/oops]`) crashed the terminal with a MarkupError."""
    out = results_folder(tmp_path)
    edit_all(out, lambda record: record.update(skipped={"clip-t": "gone [/oops] [link=http://e]x[/link]"}))
    assert tabulate(out) == 0, capsys.readouterr()
    printed = " ".join(capsys.readouterr().out.split())
    assert "skipped metric clip-t: gone [/oops] [link=http://e]x[/link]" in printed
