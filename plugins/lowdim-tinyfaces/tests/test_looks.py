"""The TinyFaces describer: the shipped file reads hair, skin and glasses from held-out photos, in caption words."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lowdim_tinyfaces.captions import attribute_words
from lowdim_tinyfaces.identity import FACTOR_NAMES
from lowdim_tinyfaces.looks import GROUPS, NAMED, describe_face, describer_path, words_for
from lowdim_tinyfaces.metrics.data import sample_levels, seeds
from lowdim_tinyfaces.world import render_tensor


def test_the_words_are_the_training_captions_grammar():
    hair = {"skin_tone": 2, "hair_colour": GROUPS["hair_colour"].index("ginger"),
            "hair_style": GROUPS["hair_style"].index("long"), "glasses": GROUPS["glasses"].index("round glasses")}
    assert words_for(hair) == " with olive skin, ginger long hair and round glasses"
    bald = {**hair, "hair_style": GROUPS["hair_style"].index("bald"), "glasses": 0}
    assert words_for(bald) == " with olive skin and a bald head"  # no glasses: nothing said


def test_every_word_it_can_say_is_in_the_models_vocabulary():
    for factor in NAMED:
        for index in range(len(GROUPS[factor])):
            classes = {f: 0 for f in NAMED} | {factor: index}
            assert set(words_for(classes).replace(",", "").split()) <= attribute_words()


@pytest.mark.skipif(not describer_path().exists(), reason="the describer ships with the plugin's package data")
def test_the_shipped_describer_reads_held_out_faces():
    count = 24
    levels = sample_levels(count, np.random.default_rng(21), split=1)  # validation identities, never fit on
    photos = render_tensor(levels, [0] * count, seeds(count, np.random.default_rng(22)), 32)
    said = [describe_face(photo) for photo in photos]
    truth = [{factor: GROUPS[factor][levels[i, FACTOR_NAMES.index(factor)]] for factor in NAMED}
             for i in range(count)]
    for factor, floor in (("skin_tone", 0.75), ("hair_colour", 0.75), ("hair_style", 0.8), ("glasses", 0.9)):
        right = [read_right(factor, looks, words.split(" with ")[1]) for looks, words in zip(truth, said, strict=True)
                 if not (factor == "hair_colour" and looks["hair_style"] == "bald")]  # a bald head has no colour
        assert np.mean(right) >= floor, (factor, said)


def read_right(factor: str, looks: dict[str, str], words: str) -> bool:
    """Whether the words name the face's true class of ``factor``, a class that is said by leaving out too."""
    if factor == "glasses" and looks[factor] == "none":
        return "glasses" not in words
    if factor == "hair_style" and looks[factor] == "bald":
        return "bald head" in words
    return looks[factor] in words


@pytest.mark.skipif(not describer_path().exists(), reason="the describer ships with the plugin's package data")
def test_the_tinyfaces_backend_describes_and_a_plain_path_does_not():
    from lowdim.registry import get_registry

    backend = get_registry().backends["tinyfaces"].value
    photo = render_tensor(sample_levels(1, np.random.default_rng(3), split=1), [0], np.array([5]), 32)[0]
    before = photo.clone()
    assert backend.describe_subject(photo).startswith(" with ")
    assert torch.equal(photo, before)  # the photo is read, not changed: the finetune trains on it next
