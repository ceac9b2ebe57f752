"""``lowdim show`` on an exported LoRA, an exported Textual Inversion embedding, an encoder-feature file and a merged
model holding a stranger's text (a 100 KB token, a newline that would split the row, an escape code that would
rewrite the terminal): each row is one bounded, escaped line that says the length of what it cut, ``--json`` keeps
the text whole, and the ``use it:`` line stays a short printable command with a placeholder where the text cannot
be copied as it is. The files are built from their headers alone: ``show`` reads nothing else."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lowdim_cli.main import main
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")

HUGE = "x" * 100_000
CONTROL = "zw\nx\x1b[2J"  # a newline and the escape code that clears the screen
HUGE_CONTROL = "\x1b[31m" + "y" * 100_000  # both: cut, escaped, its length said
TEXTS = {"huge": HUGE, "control": CONTROL, "huge-control": HUGE_CONTROL}
LONGEST_ROW = 300  # a cut row: its head, escaped, and its length


def _lora(path: Path, **meta: str) -> Path:
    """A kohya LoRA as `lowdim export` writes its header."""
    metadata = {"format": "pt", "lora_format": "kohya", "source_adapter": "me.safetensors", "space": "lidb",
                "space_config": '{"a":100}', "base_model": "tiny-base", "token": "zwx", "rank": "1",
                "dtype": "fp16", **meta}
    save_file({"lora_unet_a.lora_down.weight": torch.zeros(1, 4)}, str(path), metadata)
    return path


def _embedding(path: Path, **meta: str) -> Path:
    """An A1111 embedding as `lowdim export` writes its header."""
    metadata = {"format": "pt", "embedding_format": "a1111", "token": "zwx", "name": "zwx", "vectors": "1",
                "width": "4", "base_model": "tiny-base", "source_adapter": "me.safetensors", "space": "ti", **meta}
    save_file({"emb_params": torch.zeros(1, 4)}, str(path), metadata)
    return path


def _features(path: Path, **meta: str) -> Path:
    """An encoder-feature file as `lowdim encoder-features` writes its header."""
    metadata = {"format": "lowdim.encoder_features", "keys": json.dumps(["k0", "k1"]), "encoder": "tiny-vit",
                "input_size": "32", "normalize": "true", "pool": "0", **meta}
    save_file({"features": torch.zeros(2, 4, dtype=torch.float16)}, str(path), metadata)
    return path


def _merged(path: Path, **record: object) -> Path:
    """A single file `lowdim merge` wrote: its record in the header."""
    whole = {"base_model": "tiny-base", "adapters": [{"file": "me.safetensors", "scale": 1.0}], "tokens": ["zwx"],
             **record}
    metadata = {"format": "pt", "lowdim": "ldm-sd1", "lowdim_merge": json.dumps(whole)}
    save_file({"x": torch.zeros(2)}, str(path), metadata)
    return path


def _trained(path: Path, **record: object) -> Path:
    """A diffusers folder `lowdim train --full` wrote: its record beside the pipeline index."""
    folder = path.with_suffix("")
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    whole = {"made_by": "lowdim train --full", "base_model": "tiny-base", "tokens": ["zwx"], "steps": 40,
             "learning_rate": 1e-5, "images": 3, "prompt": "a zwx face", **record}
    (folder / "lowdim_merge.json").write_text(json.dumps(whole))
    return folder


# (what the file is, how a text gets into it, the row that shows it, where --json keeps it whole)
Case = tuple[Callable[[Path, str], Path], str, Callable[[dict], object]]
CASES: dict[str, Case] = {
    "lora source_adapter": (lambda p, t: _lora(p, source_adapter=t), "exported from", lambda f: f["exported_from"]),
    "lora token": (lambda p, t: _lora(p, token=t), "token", lambda f: f["token"]),
    "lora base_model": (lambda p, t: _lora(p, base_model=t), "base model", lambda f: f["base_model"]),
    "lora rank": (lambda p, t: _lora(p, rank=t), "rank", lambda f: f["rank"]),
    "lora space": (lambda p, t: _lora(p, space=t), "space", lambda f: f["space"]["name"]),
    "lora space_config": (lambda p, t: _lora(p, space_config=t), "space", lambda f: f["space"]["config"]),
    "embedding source_adapter": (lambda p, t: _embedding(p, source_adapter=t), "exported from",
                                 lambda f: f["exported_from"]),
    "embedding token": (lambda p, t: _embedding(p, token=t), "token", lambda f: f["token"]),
    "embedding vectors": (lambda p, t: _embedding(p, vectors=t), "vectors", lambda f: f["vectors"]),
    "features encoder": (lambda p, t: _features(p, encoder=t), "encoder", lambda f: f["encoder"]),
    "features input_size": (lambda p, t: _features(p, input_size=t), "input size", lambda f: f["input_size"]),
    "features normalize": (lambda p, t: _features(p, normalize=t), "normalize", lambda f: f["normalize"]),
    "features pool": (lambda p, t: _features(p, pool=t), "pool", lambda f: f["pool"]),
    "merged base_model": (lambda p, t: _merged(p, base_model=t), "base model", lambda f: f["base_model"]),
    "merged adapter": (lambda p, t: _merged(p, adapters=[{"file": t, "scale": 0.5}, {"file": "b", "scale": 1.0}]),
                       "adapters merged", lambda f: f["adapters_merged"][0]["file"]),
    "merged scale": (lambda p, t: _merged(p, adapters=[{"file": "a", "scale": t}]), "adapters merged",
                     lambda f: f["adapters_merged"][0]["scale"]),
    "merged token": (lambda p, t: _merged(p, tokens=[t, "qvz"]), "token", lambda f: f["token"][0]),
    "trained base_model": (lambda p, t: _trained(p, base_model=t), "base model", lambda f: f["base_model"]),
    "trained token": (lambda p, t: _trained(p, tokens=[t]), "token", lambda f: f["token"][0]),
    "trained prompt": (lambda p, t: _trained(p, prompt=t), "trained", lambda f: f["trained"]["prompt"]),
    "trained steps": (lambda p, t: _trained(p, steps=t), "trained", lambda f: f["trained"]["steps"]),
}


def table(path: Path, capsys) -> str:
    """What `lowdim show` prints: a short table, no control character from the file."""
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert len(out) < 5_000, out[:300]
    assert "\x1b" not in out, out[:300]
    return out


def json_fields(path: Path, capsys) -> dict:
    assert main(["show", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["fields"]


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_strangers_text_is_a_bounded_escaped_row_and_json_keeps_it_whole(tmp_path, capsys, case, text):
    build, label, kept = case
    path = build(tmp_path / "file.safetensors", text)
    info = describe(path)
    row = dict(info.rows)[label]
    assert row.isprintable(), row[:300]  # escaped: one line, no escape code
    assert len(row) <= LONGEST_ROW + 100, row[:400]  # a composite row: the cut text and a short rest
    if len(text) > 1_000:
        assert f"({len(text):,} characters)" in row, row[:400]  # cut, and it says by how much
    else:
        assert ascii(text)[1:-1] in row, row  # shown whole, escaped: '\n', '\x1b'
    assert info.use.isprintable() and len(info.use) < 400, info.use[:400]
    table(path, capsys)
    assert kept(json_fields(path, capsys)) == text


def test_a_short_printable_text_is_shown_as_it_is(tmp_path):
    """The bound touches only a stranger's text: what lowdim writes reads as before."""
    lora = dict(describe(_lora(tmp_path / "l.safetensors")).rows)
    assert lora["exported from"] == "me.safetensors" and lora["token"] == "zwx" and lora["rank"] == "1"
    assert lora["space"] == 'lidb {"a":100}' and lora["base model"] == "tiny-base"
    embedding = dict(describe(_embedding(tmp_path / "e.safetensors")).rows)
    assert embedding["token"] == "zwx" and embedding["vectors"] == "1"
    features = describe(_features(tmp_path / "f.safetensors"))
    rows = dict(features.rows)
    assert rows["encoder"] == "tiny-vit" and rows["pool"] == "0" and rows["input size"] == "32"
    assert shlex.split(features.use)[:5] == ["lowdim", "train-hypernet", "-w", "WEIGHTS", "--encoder"]
    assert "--encoder tiny-vit --freeze-encoder --set encoder_pool=0 --features" in features.use
    merged = describe(_merged(tmp_path / "m.safetensors"))
    assert dict(merged.rows)["adapters merged"] == "me.safetensors at 1.0" and dict(merged.rows)["token"] == "zwx"
    assert merged.use.endswith("-p 'a zwx face'")
    trained = describe(_trained(tmp_path / "t"))
    assert dict(trained.rows)["trained"] == "40 steps at lr 1e-05 on 3 images, UNet; prompt 'a zwx face'"
    assert dict(trained.rows)["base model"] == "tiny-base" and trained.use.endswith("-p 'a zwx face'")


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_feature_files_use_line_names_the_encoder_by_a_placeholder_it_cannot_show(tmp_path, text):
    use = describe(_features(tmp_path / "f.safetensors", encoder=text, pool=text)).use
    words = shlex.split(use)
    assert words[words.index("--encoder") + 1] == "ENCODER" and "encoder_pool=POOL" in words, use[:400]


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_merged_models_use_line_says_prompt_for_a_token_it_cannot_show(tmp_path, text):
    use = describe(_merged(tmp_path / "m.safetensors", tokens=[text])).use
    assert shlex.split(use)[-2:] == ["-p", "PROMPT"], use[:400]
    use = describe(_merged(tmp_path / "p.safetensors", prompt=f"a photo of {text}")).use
    assert shlex.split(use)[-2:] == ["-p", "PROMPT"], use[:400]


def test_a_merged_model_listing_many_adapters_and_tokens_names_the_first_and_counts_the_rest(tmp_path, capsys):
    adapters = [{"file": f"a{number}.safetensors", "scale": 1.0} for number in range(10_000)]
    tokens = [f"t{number}" for number in range(10_000)]
    path = _merged(tmp_path / "m.safetensors", adapters=adapters, tokens=tokens)
    rows = dict(describe(path).rows)
    assert rows["adapters merged"].startswith("a0.safetensors at 1.0, a1.safetensors at 1.0")
    assert rows["adapters merged"].endswith("and 9,995 more") and len(rows["adapters merged"]) < 300
    assert rows["token"].startswith("t0, t1") and rows["token"].endswith("and 9,995 more")
    table(path, capsys)
    fields = json_fields(path, capsys)
    assert len(fields["adapters_merged"]) == 10_000 and fields["token"] == tokens


def test_a_row_escaped_whole_and_cut_says_its_length(tmp_path, capsys):
    """Five adapter names of 200 characters, one holding a newline: the row is escaped as one line, cut, and says
    how long it was."""
    files = [f"{number}\n" + "a" * 200 for number in range(5)]
    path = _merged(tmp_path / "m.safetensors", adapters=[{"file": name, "scale": 1.0} for name in files])
    row = dict(describe(path).rows)["adapters merged"]
    whole = ", ".join(f"{name} at 1.0" for name in files)
    assert row.isprintable() and row.startswith("'0\\naaa") and row.endswith(f"({len(whole):,} characters)"), row
    table(path, capsys)
    assert [entry["file"] for entry in json_fields(path, capsys)["adapters_merged"]] == files
