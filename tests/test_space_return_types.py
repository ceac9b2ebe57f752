"""A plugin space whose methods return the wrong *type* (a list for a dict, one tensor for ``(down, up)``), or
whose ``factors`` reads values (``.item()``, ``float()``) and so cannot run on meta tensors, gets the same one
line as a wrong shape: naming the space, the layer and the rule, not a bare AttributeError from lowdim's own
checks or torch's "cannot be called on meta tensors" (review CH, findings 2 and 3)."""

from __future__ import annotations

import pytest
import torch
from test_space_checks import UpOnly, model

import lowdim


class ShapesAsList(UpOnly):
    def param_shapes(self, layer):
        return [("up", (layer.out_features, self.config.rank))]


class ShapeAsInt(UpOnly):
    def param_shapes(self, layer):
        return {"up": layer.out_features * self.config.rank}


class InitAsTensor(UpOnly):
    def init_params(self, layer, generator):
        return torch.zeros(layer.out_features, self.config.rank)


class InitAsLists(UpOnly):
    def init_params(self, layer, generator):
        return {"up": [0.0] * layer.out_features}


class BuffersAsTensor(UpOnly):
    def make_buffers(self, layer, seed):
        return super().make_buffers(layer, seed)["down"]


class FactorsAsDelta(UpOnly):
    """Returns ΔW itself, as ``delta()`` does: the natural first mistake."""

    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return up @ down


class FactorsAsThree(UpOnly):
    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return [down, up, None]


class FactorsWithNone(UpOnly):
    def factors(self, params, buffers):
        down, _ = super().factors(params, buffers)
        return down, None


class FactorsReadValues(UpOnly):
    """Correct on real tensors; ``float()`` cannot run on the meta tensors the default ``rank`` uses."""

    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return down * (1 + float(up.abs().sum())), up


class FactorsIndexByValue(UpOnly):
    """A data-dependent op (boolean mask), whose meta error does not even say "meta"."""

    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return down, up + up[up > 0].sum()


META = (r"factors cannot run on meta-device tensors \(lowdim calls it there to learn the shapes\): use torch "
        r"operations only, no \.item\(\)/float\(\)/numpy or indexing by value \(")

MISTAKES = {
    ShapesAsList: r"param_shapes returned a list; it must return a dict of shapes by param name",
    ShapeAsInt: r"param_shapes gave up as 12; each shape must be a tuple of ints",
    InitAsTensor: r"init_params returned a Tensor; init_params must return a dict of tensors by the names "
                  r"param_shapes gives \(up\)",
    InitAsLists: r"init_params gave up as a list; init_params must return a dict of tensors by the names "
                 r"param_shapes gives \(up\)",
    BuffersAsTensor: r"make_buffers returned a Tensor; it must return a dict of tensors by name \(\{\} for none\)",
    FactorsAsDelta: r"factors returned a Tensor; it must return \(down, up\)",
    FactorsAsThree: r"factors returned a list of 3 \(Tensor, Tensor, NoneType\); it must return \(down, up\)",
    FactorsWithNone: r"factors returned a tuple of 2 \(Tensor, NoneType\); it must return \(down, up\)",
    FactorsReadValues: META + r"RuntimeError: Tensor\.item\(\) cannot be called on meta tensors\)",
    FactorsIndexByValue: META + r"NotImplementedError: ",
}


@pytest.mark.parametrize("space_class", list(MISTAKES), ids=lambda c: c.__name__)
def test_a_wrong_return_type_is_one_line_blaming_the_space_and_layer(space_class):
    plain = model()
    with pytest.raises(lowdim.LowdimError, match=r"^space 'up-only' on layer 0 \(6x8\): " + MISTAKES[space_class]) \
            as raised:
        lowdim.inject(plain, space_class(), ["0", "2"])
    said = str(raised.value)
    assert "\n" not in said
    assert said.endswith("(a bug in the space's code, not in the model or the options)")
    assert [type(m) for m in plain] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]  # nothing half-added


def test_factors_as_a_list_of_two_tensors_still_works():
    class FactorsAsList(UpOnly):
        def factors(self, params, buffers):
            return list(super().factors(params, buffers))

    net = model()
    lowdim.inject(net, FactorsAsList(), ["0", "2"])
    assert bool(net(torch.ones(1, 8)).isfinite().all())
