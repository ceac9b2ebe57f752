"""`lowdim generate --token W` with adapters that learned another word calls a word none of them was taught,
which is said; a negative --guidance, which diffusers would take silently as no guidance, is refused."""

from __future__ import annotations

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.generate import GenerateConfig, check_config, token_warnings


def test_a_token_no_adapter_learned_is_warned_about():
    lines = token_warnings(["a [V] face"], ["sks"], "zzz")
    assert lines == ["--token zzz: [V] becomes 'zzz', a word none of the adapters learned (they learned 'sks'), so "
                     "the pictures show no one in particular; leave --token out to call their subject"]


@pytest.mark.parametrize(("tokens", "flag", "taught"), [
    (["sks"], "sks", None),  # the word it learned, typed out
    (["sks", "zzz"], "zzz", None),  # one of them learned it
    ([""], "zzz", None),  # a file that records no word: nothing to compare with
    ([], "ohwx", ["ohwx"]),  # a merged model taught it
])
def test_a_token_an_adapter_or_the_merged_model_learned_is_not(tokens, flag, taught):
    assert token_warnings(["a [V] face"], tokens, flag, taught) == []


def test_no_identifier_in_the_prompts_means_nothing_to_say():
    assert token_warnings(["a photo of a face"], ["sks"], "zzz") == []


@pytest.mark.parametrize("guidance", [-1.0, -0.01])
def test_a_negative_guidance_is_one_line(guidance):
    with pytest.raises(LowdimError, match=r"GenerateConfig\(guidance=...\) must be 0 or more \(1 or less draws "
                                          r"without classifier-free guidance; 5 to 7.5 is usual\), got -"):
        check_config(GenerateConfig(prompts=["a face"], guidance=guidance))


@pytest.mark.parametrize("guidance", [0.0, 1.0, 7.5])
def test_guidance_from_zero_up_is_drawn(guidance):
    check_config(GenerateConfig(prompts=["a face"], guidance=guidance))
