"""Kernel launches of a training step: the one-read finiteness check, and the UNet replayed from CUDA graphs.

On a CPU the graph path runs with a stand-in capture that checks what a graph would be given (placeholders
of each call's shape, dtype and gradient need) and then calls the UNet: the engine's side of the contract.
The real capture runs only where CUDA is (the GPU session's check, skipped in CI).
"""

from __future__ import annotations

import collections
import contextlib
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import lowdim
from lowdim_sd import step_graphs
from lowdim_sd.divergence import all_finite as _all_finite
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, relaxed_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train

STYLES = ("a [V] face at night", "a pencil sketch of a [V] face")


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.__name__.split(".")[0]] += 1
        return func(*args, **(kwargs or {}))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.sampled_from(["fp32", "fp16"]),
                          st.sampled_from([None, "nan", "inf", "-inf", "big"])), min_size=1, max_size=8),
       st.integers(0, 2**31 - 1))
def test_all_finite_agrees_with_every_element(specs, seed):
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for size, dtype, poison in specs:
        tensor = torch.randn(size, generator=generator).to(torch.float16 if dtype == "fp16" else torch.float32)
        if poison == "big":  # finite, yet its norm overflows fp16: the element-wise look must decide
            tensor[:] = 60000.0 if dtype == "fp16" else 3e37
        elif poison:
            tensor[int(torch.randint(size, (1,), generator=generator))] = float(poison)
        tensors.append(tensor)
    assert _all_finite(tensors) == all(bool(torch.isfinite(t).all()) for t in tensors)


def test_the_finiteness_check_launches_as_many_kernels_for_many_tensors_as_for_few():
    def kernels(count: int) -> int:
        tensors = [torch.randn(7) for _ in range(count)]
        with CountOps() as mode:
            assert _all_finite(tensors)
        return sum(mode.counts.values())

    assert kernels(300) == kernels(3) < 12  # the per-tensor check it replaced: 5 a tensor, 1,760 for SD1.5


def stand_in_capture(log: list):
    """What torch.cuda.make_graphed_callables is given, checked, and the call run eagerly."""
    def capture(call, sample):
        placeholders = [(tuple(t.shape), t.dtype, t.requires_grad) for t in sample]
        log.append((call, placeholders))

        def replay(*inputs):
            assert [(tuple(t.shape), t.dtype, t.requires_grad) for t in inputs] == placeholders
            return call(*inputs)
        return replay
    return capture


def relaxed(tiny_sd, merge_frozen: bool = True):
    model = load_sd(str(tiny_sd))
    lowdim.Adapters(model.modules).add("initial", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    return model, relaxed_trainable(model, "initial", rank=2, merge_frozen=merge_frozen,
                                    metadata={"base_model": "tiny", "token": "sks"})


@pytest.mark.parametrize("keep_styles", [0.0, 0.5])
def test_graphed_runs_take_the_eager_runs_steps_and_capture_once(tiny_sd, faces, monkeypatch, keep_styles):
    monkeypatch.setattr(step_graphs, "check_graphs", lambda *args: None)  # the CPU stands in for a GPU here
    log: list = []
    monkeypatch.setattr(step_graphs, "cuda_capture", stand_in_capture(log))
    runs = {}
    for graphs in (False, True):
        model, trainable = relaxed(tiny_sd, merge_frozen=not keep_styles)  # as personalize --keep-styles
        config = TrainConfig(steps=3, learning_rate=1e-2, cuda_graphs=graphs, keep_styles=keep_styles,
                             style_prompts=STYLES if keep_styles else ())
        result = train(model, [Subject(faces[:1], 0)], trainable, config, progress=False)
        runs[graphs] = result.losses, trainable.state()
    assert runs[True][0] == runs[False][0]
    assert all(torch.equal(runs[True][1][key], value) for key, value in runs[False][1].items())
    (call, ids), (_, unet_inputs) = log  # one capture of each model for the whole run, the text encoder first
    assert isinstance(call, step_graphs.TextCall) and ids == [((1, 77), torch.int64, False)]
    rows = 1 if not keep_styles else 1 + 2 * len(STYLES)  # the batch, then --keep-styles' face and styled rows
    assert [shape[0] for shape, _, _ in unet_inputs] == [rows] * 3
    assert unet_inputs[2][2]  # the prompt's states need gradients: the text encoder's adapter trains through them


def test_a_new_run_captures_its_own_graphs(tiny_sd, faces, monkeypatch):
    monkeypatch.setattr(step_graphs, "check_graphs", lambda *args: None)
    log: list = []
    monkeypatch.setattr(step_graphs, "cuda_capture", stand_in_capture(log))
    model, trainable = relaxed(tiny_sd)
    for _ in range(2):  # a graph replays what it captured: one made for another run must not be reused
        train(model, [Subject(faces[:1], 0)], trainable, TrainConfig(steps=2, cuda_graphs=True), progress=False)
    assert len(log) == 4


def test_a_text_encoder_with_nothing_to_train_is_not_captured(tiny_sd, faces, monkeypatch):
    monkeypatch.setattr(step_graphs, "check_graphs", lambda *args: None)
    log: list = []
    monkeypatch.setattr(step_graphs, "cuda_capture", stand_in_capture(log))
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers("unet"))
    train(model, [Subject(faces[:1], 0)], trainable, TrainConfig(steps=2, cuda_graphs=True), progress=False)
    assert [type(call) for call, _ in log] == [step_graphs.UNetCall]


def test_a_model_that_cannot_be_captured_runs_eagerly_with_one_warning(tiny_sd, faces, monkeypatch):
    monkeypatch.setattr(step_graphs, "check_graphs", lambda *args: None)
    log: list = []
    stand_in = stand_in_capture(log)

    def capture(call, sample):
        if isinstance(call, step_graphs.UNetCall):
            raise RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors ...")
        return stand_in(call, sample)

    monkeypatch.setattr(step_graphs, "cuda_capture", capture)
    losses = {}
    for graphs in (False, True):
        model, trainable = relaxed(tiny_sd)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            config = TrainConfig(steps=3, learning_rate=1e-2, cuda_graphs=graphs)
            losses[graphs] = train(model, [Subject(faces[:1], 0)], trainable, config, progress=False).losses
        said = [str(w.message) for w in caught if "--cuda-graphs" in str(w.message)]
    assert said == ["--cuda-graphs: the UNet could not be captured (RuntimeError: operation not permitted when "
                    "stream is capturing); it runs eagerly"]
    assert losses[True] == losses[False] and len(log) == 1  # the text encoder's graph still serves


def test_graphs_are_refused_where_they_cannot_run(tiny_sd, faces):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    with pytest.raises(lowdim.LowdimError, match="--cuda-graphs needs a CUDA GPU; the model is on cpu"):
        train(model, [Subject(faces[:1], 0)], trainable, TrainConfig(steps=1, cuda_graphs=True), progress=False)
    cuda = torch.device("cuda")
    with pytest.raises(lowdim.LowdimError, match="instead of --mixed-precision"):
        step_graphs.check_graphs(cuda, "fp16", False)
    with pytest.raises(lowdim.LowdimError, match="--gradient-checkpointing"):
        step_graphs.check_graphs(cuda, "no", True)


@pytest.mark.parametrize("command", [["personalize", "--image", "FACE", "--no-preview", "--no-crop"],
                                     ["train", "-i", "FACE"]])
def test_the_cli_refuses_cuda_graphs_on_a_cpu_in_one_line_before_loading(tiny_sd, face, tmp_path, command, capsys,
                                                                        monkeypatch):
    from lowdim_cli.main import main

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the flag was refused")

    monkeypatch.setattr("lowdim_sd.personalize.load_sd", no_loading)
    monkeypatch.setattr("lowdim_sd.workflows.load_sd", no_loading)
    args = [part.replace("FACE", str(face)) for part in command]
    code = main([*args, "--model", str(tiny_sd), "--out", str(tmp_path / "out"), "--device", "cpu", "--cuda-graphs"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines()[-1].endswith("--cuda-graphs needs a CUDA GPU; the model is on cpu")
    assert "Traceback" not in err


def test_eager_steps_stack_the_adapters_factors_unless_layers_are_recomputed(tiny_sd, faces, monkeypatch):
    real, seen = step_graphs.stacked_factors, []
    real_read, reads = step_graphs.recomputes_layers, []

    @contextlib.contextmanager
    def spy(model):
        with real(model) as count:
            seen.append((type(model).__name__, count))
            yield count

    def read_spy(model):
        reads.append(type(model).__name__)
        return real_read(model)

    monkeypatch.setattr(step_graphs, "stacked_factors", spy)
    monkeypatch.setattr(step_graphs, "recomputes_layers", read_spy)
    runs = {}
    model = load_sd(str(tiny_sd))
    for checkpointing in (False, True, False):  # one model: each run reads the switch its own run set
        seen.clear(), reads.clear()
        lowdim.Adapters(model.modules).remove_all()
        trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
        config = TrainConfig(steps=3, augment=False, gradient_checkpointing=checkpointing)
        train(model, [Subject(faces[:1], 0)], trainable, config, progress=False)
        runs.setdefault(checkpointing, []).append((list(seen), len(trainable.parameters) // 2))
        # Read at each model's first call, not every step: the read walks all of the model's modules.
        assert sorted(reads) == ["CLIPTextModel", "UNet2DConditionModel"]
    for stacked, layers in runs[False]:
        assert [name for name, _ in stacked] == ["CLIPTextModel", "UNet2DConditionModel"] * 3
        assert sum(count for _, count in stacked) == 3 * layers  # every shape of the tiny model occurs twice
    assert runs[True][0][0] == []  # checkpointing recomputes layers in backward: factors made per layer there


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_real_graphs_match_eager_steps_on_a_gpu(tiny_sd, faces):
    runs = {}
    for graphs in (False, True):
        model = load_sd(str(tiny_sd), device="cuda", dtype="fp32")
        lowdim.Adapters(model.modules).add("initial", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
        trainable = relaxed_trainable(model, "initial", rank=2, metadata={"base_model": "tiny", "token": "sks"})
        config = TrainConfig(steps=4, learning_rate=1e-2, cuda_graphs=graphs)
        runs[graphs] = train(model, [Subject(faces[:1], 0)], trainable, config, progress=False).losses
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)
