"""The styles' names and prompt templates: words only, so the plugin lists its backend without torch.

How each style looks in pixels is ``styles``' part.
"""

from __future__ import annotations

# Ordered: the position is the integer style id used in tensors.
STYLE_TEMPLATES: dict[str, str] = {
    "photo": "a photo of a {subject}",
    "sketch": "a pencil sketch of a {subject}",
    "popart": "a pop-art poster of a {subject}",
    "night": "a {subject} at night",
    "red_background": "a {subject} on a red background",
    "hat": "a {subject} wearing a hat",
}
STYLES: tuple[str, ...] = tuple(STYLE_TEMPLATES)
STYLE_INDEX: dict[str, int] = {name: i for i, name in enumerate(STYLES)}
TRAINING_SUBJECT = "face"


def prompt_for(style: str | int, subject: str = TRAINING_SUBJECT) -> str:
    """The caption for ``style``; pass ``subject="[V] face"`` for personalised prompts."""
    name = STYLES[style] if isinstance(style, int) else style
    return STYLE_TEMPLATES[name].format(subject=subject)
