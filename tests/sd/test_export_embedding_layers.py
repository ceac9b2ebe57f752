"""`lowdim export` to an SD LoRA format (diffusers, kohya) refuses an adapter with a layer on an embedding (the text
encoder's token or position lookup table), in one line naming the file and the layer, before writing anything:
readers apply every factor pair as a linear update, so diffusers refuses such a file or draws another picture, and
kohya readers drop the layer without a word (review A1)."""

from __future__ import annotations

import re
import types

import pytest
from torch import nn

import lowdim
from lowdim.hookspecs import hookimpl
from lowdim.injection.select import LayerSet
from lowdim.plugins import BUILTIN_MODULES
from lowdim_cli.main import main
from lowdim_sd.export import ExportError, export_adapter
from lowdim_sd.plugin import SDBackend

pytestmark = pytest.mark.usefixtures("one_thread")
TOKEN_ROWS = LayerSet("emb", ("text_encoder.*token_embedding",), types=("embedding",))
ROWS_AND_ATTENTION = LayerSet("embtext", ("text_encoder.*token_embedding", "text_encoder.*.self_attn.*"),
                              types=("linear", "embedding"))


class TokenRows(SDBackend):
    """A plugin's model whose layer sets reach the token embedding, as docs/plugins.md allows."""

    layer_sets = {**SDBackend.layer_sets, "emb": TOKEN_ROWS, "embtext": ROWS_AND_ATTENTION}


@pytest.fixture
def token_rows_model(tiny_sd):
    plugin = types.ModuleType("token_rows")
    plugin.register_backends = hookimpl(lambda register: register(TokenRows("tinyrows", str(tiny_sd))))
    with lowdim.use_registry(lowdim.Registry.from_plugins([*BUILTIN_MODULES, "lowdim_sd.plugin", plugin])):
        yield "tinyrows"


def _trained(model: str, layers: str, face, out) -> str:
    from lowdim_sd.train import TrainConfig
    from lowdim_sd.workflows import TrainJob, run_train

    job = TrainJob(model=model, images=[face], out=out, space="lora", layers=layers, config=TrainConfig(steps=1))
    return str(run_train(job, progress=False).outputs[0])


@pytest.mark.parametrize("layers", ["emb", "embtext"])
def test_export_refuses_a_lora_on_the_token_embedding_in_one_line_and_writes_nothing(token_rows_model, face,
                                                                                     tmp_path, capsys, layers):
    adapter = _trained(token_rows_model, layers, face, tmp_path / "run")
    capsys.readouterr()
    (tmp_path / "ex").mkdir()
    for fmt in ("diffusers", "kohya"):
        code = main(["export", adapter, "-f", fmt, "-o", str(tmp_path / "ex" / f"x.{fmt}.safetensors")])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
        line = " ".join(lines[0].split())
        assert adapter in line and "token_embedding" in line, line
        assert "lowdim merge" in line and "Textual Inversion" in line, line
    assert not list((tmp_path / "ex").iterdir())


def _tiny_text_encoder(prefix: str = "") -> nn.Module:
    """CLIP's layout: the embeddings' two lookup tables and one attention layer; under ``text_model.`` with
    ``prefix``, as transformers < 5 names them."""
    encoder = nn.Module()
    encoder.embeddings = nn.Module()
    encoder.embeddings.token_embedding = nn.Embedding(10, 4)
    encoder.embeddings.position_embedding = nn.Embedding(6, 4)
    layer = nn.Module()
    layer.self_attn = nn.Module()
    layer.self_attn.out_proj = nn.Linear(4, 4)
    encoder.encoder = nn.Module()
    encoder.encoder.layers = nn.ModuleList([layer])
    if prefix:
        outer = nn.Module()
        outer.text_model = encoder
        encoder = outer
    return nn.ModuleDict({"text_encoder": encoder})


@pytest.mark.parametrize("prefix", ["", "text_model."])  # transformers >= 5's names, and older ones'
@pytest.mark.parametrize("table", ["token_embedding", "position_embedding"])
@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_the_library_refuses_any_embedding_layer(tmp_path, table, fmt, prefix):
    model = _tiny_text_encoder(prefix)
    layer = f"text_encoder.{prefix}embeddings.{table}"
    targets = LayerSet("e", (layer, "text_encoder.*.out_proj"), types=("linear", "embedding"))
    lowdim.inject(model, lowdim.get_space("lora", rank=2), targets)
    adapter = lowdim.save_adapter(tmp_path / "a.safetensors", model)
    with pytest.raises(ExportError, match=f"^{adapter}: layer {re.escape(layer)} ") as error:
        export_adapter(adapter, tmp_path / "out.safetensors", fmt)
    assert "\n" not in str(error.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.safetensors"]


def test_a_lora_on_linear_text_layers_still_exports(tmp_path):
    model = _tiny_text_encoder()
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["text_encoder.encoder.layers.0.self_attn.out_proj"])
    adapter = lowdim.save_adapter(tmp_path / "a.safetensors", model)
    assert export_adapter(adapter, tmp_path / "out.safetensors", "kohya").is_file()
