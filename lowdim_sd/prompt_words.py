"""The words of a prompt: what [V] becomes, where a photo's looks go, and what a [V] prompt will not do as its
user likely expects (no adapter, two adapters or a merged model that learned the same word)."""

from __future__ import annotations

import re
from collections.abc import Sequence

IDENTIFIER = "[V]"


def fill(prompt: str, token: str) -> str:
    return prompt.replace(IDENTIFIER, token)


def with_looks(prompt: str, looks: str) -> str:
    """"a [V] face at night" -> "a [V] face with ginger long hair at night": the looks after [V]'s noun."""
    if not looks:
        return prompt
    pattern = re.compile(re.escape(IDENTIFIER) + r"(\s+[\w-]+)?")
    return pattern.sub(lambda found: found.group(0) + looks, prompt, count=1)


def token_warnings(prompts: Sequence[str], tokens: Sequence[str], token_flag: str | None,
                   taught: Sequence[str] | None = None) -> list[str]:
    """What a [V] prompt will not do as its user likely expects, each in one line: with no adapter, [V] is
    a word the model was never taught; with two adapters that learned the same word, it calls both; on a
    merged model (``taught``: ``SDModel.taught``) taught several words, it calls the first only."""
    if not any(IDENTIFIER in prompt for prompt in prompts):
        return []
    if token_flag:
        return _foreign_token_lines(tokens, token_flag, taught)
    if not tokens and taught is None:
        return [f"no --adapter: {IDENTIFIER} becomes 'sks', a word this model was never taught, so the pictures "
                f"show no one in particular"]
    shared = sorted({t for t in tokens if t and list(tokens).count(t) > 1})
    merged_too = sorted({t for t in tokens if t and t in (taught or [])})
    return [*_merged_token_lines(tokens, taught),
            *(f"{sum(t == word for t in tokens)} adapters learned the word '{word}': {IDENTIFIER} calls them all "
              f"at once, so their subjects blend; personalize each with its own --token to draw them apart"
              for word in shared),
            *(f"an adapter and the merged model both learned the word '{word}': {IDENTIFIER} calls both at once, so "
              f"their subjects blend; personalize the adapter with its own --token to draw them apart"
              for word in merged_too)]


def _foreign_token_lines(tokens: Sequence[str], token_flag: str, taught: Sequence[str] | None) -> list[str]:
    """--token naming a word that adapters which record theirs never learned (nor a merged model)."""
    learned = [t for t in tokens if t]
    if not learned or len(learned) < len(tokens) or token_flag in [*learned, *(taught or [])]:
        return []
    words = ", ".join(f"'{word}'" for word in dict.fromkeys(learned))
    return [f"--token {token_flag}: {IDENTIFIER} becomes '{token_flag}', a word none of the adapters learned (they "
            f"learned {words}), so the pictures show no one in particular; leave --token out to call their subject"]


def _merged_token_lines(tokens: Sequence[str], taught: Sequence[str] | None) -> list[str]:
    """[V] on a merged model, where no adapter names its word: the model's word, unless it records none or several."""
    if taught is None or any(tokens):
        return []
    if not taught and not tokens:
        return [f"this merged model records no token: {IDENTIFIER} becomes 'sks'; pass --token with the word its "
                f"adapters learned"]
    if len(taught) > 1:
        others = " or ".join(f"'{word}'" for word in taught[1:])
        return [f"this merged model was taught {len(taught)} words ({', '.join(taught)}): {IDENTIFIER} becomes "
                f"'{taught[0]}', the first; write {others} in the prompt itself, or pass --token, for another subject"]
    return []


def unnamed_subject_lines(prompts: Sequence[str], tokens: Sequence[str], becomes: str) -> list[str]:
    """An adapter that records its word, which no prompt names ([V], which ``becomes`` that word, or the word typed
    out): its subject is never called, and the picture, partly the adapter still, passes for a weak adapter.
    A file that records no word (a style LoRA) is not asked for one. One line, however many adapters."""
    with_v = any(IDENTIFIER in prompt for prompt in prompts)
    unnamed = [word for word in dict.fromkeys(t for t in tokens if t)
               if not (with_v and word == becomes) and not any(_names(prompt, word) for prompt in prompts)]
    if not unnamed or (with_v and becomes not in tokens):  # a --token no adapter learned: _foreign_token_lines
        return []
    words = " or ".join(unnamed)
    whose = "the adapter's subject is" if len(unnamed) == 1 else "the adapters' subjects are"
    if not with_v:
        return [f"no prompt names {IDENTIFIER} ({words}): {whose} not called"]
    return [f"no prompt names {words}: {whose} not called ({IDENTIFIER} becomes '{becomes}')"]


def _names(prompt: str, word: str) -> bool:
    """The word typed out as a word of its own, in any case (the tokenizer lowercases): "a SKS face" names sks."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", prompt, re.IGNORECASE) is not None
