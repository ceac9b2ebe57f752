"""Captions that name what a face looks like, for a base model that can compose looks with styles.

With style-only captions ("a face at night") the base model learns no words for hair, skin or
glasses, so it can carry a face into another style only through the starting noise. SD1.5 was
trained on captions that describe people; ``captions="attributes"`` in the training config gives
TinyFaces the same: each caption names a random subset of the identity's most visible factors.
"""

from __future__ import annotations

import numpy as np

from .identity import FACTOR_NAMES
from .styles import prompt_for

# The factors a caption may name, with a phrase per level ("" = say nothing for that level).
ATTRIBUTE_PHRASES: dict[str, tuple[str, ...]] = {
    "skin_tone": ("pale skin", "fair skin", "olive skin", "tan skin", "brown skin", "dark skin"),
    "hair_colour": ("black", "dark brown", "light brown", "blonde", "ginger", "grey", "blue"),
    "hair_style": ("bald", "buzzcut", "sidesweep", "bob", "long", "afro"),
    "eye_colour": ("brown eyes", "blue eyes", "green eyes", "grey eyes", "violet eyes"),
    "glasses": ("", "round glasses", "square glasses", "sunglasses"),
    "beard": ("", "a moustache", "a goatee", "a full beard"),
}
_BALD = ATTRIBUTE_PHRASES["hair_style"].index("bald")


def attribute_words() -> set[str]:
    """Every word an attribute caption can use (for the tokenizer's whole-word vocabulary)."""
    words = {"hair", "with", "and", "a", "head"}  # "a bald head" is said of a bald face
    for phrases in ATTRIBUTE_PHRASES.values():
        words |= {word for phrase in phrases for word in phrase.split()}
    return words


def _hair(colour: str | None, style: int | None) -> str:
    if style == _BALD:
        return "a bald head"
    style_word = ATTRIBUTE_PHRASES["hair_style"][style] if style is not None else None
    return " ".join(w for w in (colour, style_word, "hair") if w)


def describe(levels: np.ndarray, named: set[str]) -> str:
    """The caption's suffix naming the factors in ``named``, e.g. " with ginger long hair" ("" for none)."""
    level = dict(zip(FACTOR_NAMES, (int(v) for v in levels), strict=True))
    parts = []
    if "skin_tone" in named:
        parts.append(ATTRIBUTE_PHRASES["skin_tone"][level["skin_tone"]])
    colour = ATTRIBUTE_PHRASES["hair_colour"][level["hair_colour"]] if "hair_colour" in named else None
    style = level["hair_style"] if "hair_style" in named else None
    if colour or style is not None:
        parts.append(_hair(colour, style))
    for factor in ("eye_colour", "glasses", "beard"):
        if factor in named and ATTRIBUTE_PHRASES[factor][level[factor]]:
            parts.append(ATTRIBUTE_PHRASES[factor][level[factor]])
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return " with " + listed


def attribute_caption(levels: np.ndarray, style: int, rng: np.random.Generator,
                      name_rate: float = 0.5, plain_rate: float = 0.3) -> str:
    """The style's caption for a face, naming each factor with probability ``name_rate``.

    ``plain_rate`` of captions name nothing, so the plain style prompts the personalisation
    prompts build on ("a photo of a [V] face") stay in distribution.
    """
    named: set[str] = set()
    if rng.random() >= plain_rate:
        named = {f for f in ATTRIBUTE_PHRASES if rng.random() < name_rate}
    return prompt_for(style, "face" + describe(levels, named))
