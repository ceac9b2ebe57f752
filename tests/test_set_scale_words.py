"""``Adapters.set_scale`` as a user writes it: the scale alone for the view's adapter (the one ``enable()`` picks),
the name and scale for any other, and one line for every call it cannot read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import lowdim
from lowdim.errors import LowdimError


def filled(names: tuple[str, ...] = ("me",), view_name: str | None = "me") -> tuple[nn.Sequential, lowdim.Adapters]:
    """A one-layer model (layer '0') with random (non-zero) adapters ``names``; the view acts on ``view_name``, or
    is ``Adapters(model)`` (whose adapter is 'default') when it is None."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3))
    view = lowdim.Adapters(net)
    for name in names:
        view.add(name, lowdim.get_space("lora", rank=2), ["0"])
        with torch.no_grad():
            for param in view.parameters(name):
                param.copy_(torch.randn_like(param))
    return net, (lowdim.Adapters(net, default=view_name) if view_name else lowdim.Adapters(net))


def scales(view: lowdim.Adapters) -> dict[str, float]:
    return {name: slot.scale for name in view.names() for slot in view.slots(name).values()}


@pytest.mark.parametrize("call", [
    lambda view: view.set_scale(0.5),
    lambda view: view.set_scale(scale=0.5),
    lambda view: view.set_scale(0.5, layers="0"),
    lambda view: view.set_scale("me", 0.5),
    lambda view: view.set_scale(name="me", scale=0.5, layers=["0"]),
], ids=["scale_alone", "scale_by_keyword", "scale_alone_with_layers", "name_and_scale", "all_by_keyword"])
def test_the_scale_alone_scales_the_views_adapter_as_its_name_and_scale_do(call: Callable[[lowdim.Adapters], None]):
    net, view = filled()
    x = torch.randn(5, 4)
    update = view.delta("me", "0")  # at scale 1: the whole ΔW
    call(view)
    expected = F.linear(x, net[0].base_layer.weight + 0.5 * update, net[0].base_layer.bias)
    torch.testing.assert_close(net(x), expected)
    assert scales(view) == {"me": 0.5}


def test_the_scale_alone_picks_the_adapter_enable_picks_among_several():
    net, view = filled(("me", "other"), view_name="me")
    view.set_scale(0.5)
    assert scales(view) == {"me": 0.5, "other": 1.0}
    view.disable()
    assert [slot.enabled for slot in view.slots("me").values()] == [False]  # the same adapter


def test_a_plain_view_scales_its_default_adapter():
    net, view = filled(("default",), view_name=None)
    view.set_scale(0.25)
    assert scales(view) == {"default": 0.25}


def one_line_refusal(view: lowdim.Adapters, call: Callable[[lowdim.Adapters], None], *words: str) -> None:
    before = scales(view)
    with pytest.raises(LowdimError) as refusal:
        call(view)
    message = str(refusal.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert scales(view) == before  # refused before anything changed


def test_several_adapters_and_none_the_views_name_one_line_naming_them_and_the_call():
    _, view = filled(("me", "other"), view_name=None)
    one_line_refusal(view, lambda v: v.set_scale(0.5), "'me'", "'other'", "set_scale('me', 0.5)")
    one_line_refusal(view, lambda v: v.set_scale(scale=0.5), "'me'", "'other'", "set_scale('me', 0.5)")


def test_one_adapter_not_the_views_says_the_call_that_names_it():
    _, view = filled(("me",), view_name=None)
    one_line_refusal(view, lambda v: v.set_scale(0.5), "'default'", "set_scale('me', 0.5)")


@pytest.mark.parametrize(("call", "words"), [
    (lambda view: view.set_scale(["me"], 0.5), ["name must be a str", "list"]),
    (lambda view: view.set_scale("me"), ["set_scale('me')", "no scale", "set_scale('me', 0.5)"]),
    (lambda view: view.set_scale(name="me"), ["set_scale('me')", "no scale"]),
    (lambda view: view.set_scale(), ["no scale", "set_scale(0.5)"]),
    (lambda view: view.set_scale(0.5, 0.7), ["set_scale(0.5, 0.7)", "name", "set_scale('me', 0.7)",
                                              "set_scale(0.5, layers=...)"]),
    (lambda view: view.set_scale(0.5, "0"), ["set_scale(0.5, '0')", "set_scale('me', 0.5)",
                                             "set_scale(0.5, layers=...)"]),
    (lambda view: view.set_scale("me", "0.5"), ["scale must be a finite number", "'0.5'"]),
    (lambda view: view.set_scale(float("nan")), ["scale must be a finite number", "nan"]),
    (lambda view: view.set_scale(True), ["scale must be a finite number", "True"]),
], ids=["name_a_list", "name_without_scale", "name_by_keyword_without_scale", "nothing",
        "two_numbers", "scale_then_layers_by_position", "scale_a_str", "scale_alone_nan", "scale_alone_bool"])
def test_a_call_set_scale_cannot_read_is_one_line_and_changes_nothing(call, words):
    _, view = filled()
    one_line_refusal(view, call, *words)
