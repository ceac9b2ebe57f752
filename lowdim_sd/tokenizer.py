"""A CLIP-compatible byte-level BPE tokenizer built from a word list, with no download.

Tiny models (tests, TinyFaces) need real tokenizer files that ``CLIPTokenizer.from_pretrained``
reads. Every byte is in the vocabulary, so any text tokenizes (a rare identifier such as "sks"
becomes a few byte tokens); the given words get whole-word tokens through chains of merges.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import partial
from pathlib import Path

SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word, as CLIP's tokenizer does it: join every occurrence of the
    lowest-ranked adjacent pair, left to right, until no adjacent pair is a merge."""
    symbols = list(symbols)
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:], strict=False), key=lambda pair: ranks.get(pair, len(ranks)))
        if best not in ranks:
            break
        joined, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                joined.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                joined.append(symbols[i])
                i += 1
        symbols = joined
    return symbols


def _chain(segments: list[str], ranks: dict[tuple[str, str], int], merges: list[str],
           tokens: list[str], seen: set[str]) -> None:
    """Add the merges that join ``segments`` left to right into one token."""
    current = segments[0]
    for segment in segments[1:]:
        if (current, segment) not in ranks:
            ranks[current, segment] = len(merges)
            merges.append(f"{current} {segment}")
        if current + segment not in seen:
            tokens.append(current + segment)
            seen.add(current + segment)
        current += segment


def build_vocab(words: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """(vocab, merges) in CLIP's layout: bytes, bytes + '</w>', merged tokens, then specials."""
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet]
    merges: list[str] = []
    seen = set(tokens)
    byte_map = bytes_to_unicode()
    # Longer words first: their merges then outrank a shorter word's, so "hat" is not split as "h" + "at".
    # CLIP's pre-tokenizer splits letters from digits and punctuation, so the words are split the same way.
    pieces = {piece for w in words for piece in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", w.lower())}
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted(pieces, key=lambda w: (-len(w), w)):
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        # Earlier words' merges may already join some of this word's letters (and can block the plain
        # left-to-right chain: "li" from "light" leaves "olive" as "o li v e"), so chain what BPE leaves,
        # again until BPE joins the whole word (repeated pairs, as in "aaaa", can take two rounds).
        for _ in range(len(symbols)):
            segments = apply_merges(symbols, ranks)
            if len(segments) == 1:
                break
            _chain(segments, ranks, merges, tokens, seen)
        else:
            raise ValueError(f"no merge chain makes '{word}' one token")  # never seen; a guard, not a path
    tokens += list(SPECIAL)
    return {token: index for index, token in enumerate(tokens)}, merges


def write_clip_tokenizer(folder: str | Path, words: Iterable[str], max_length: int = 77) -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json that CLIPTokenizer loads, each atomically (a
    killed build leaves each file whole or absent, never a vocabulary cut short that still loads)."""
    from lowdim.files import atomic_write

    folder = Path(folder)
    vocab, merges = build_vocab(words)
    special = {"bos_token": SPECIAL[0], "eos_token": SPECIAL[1], "unk_token": SPECIAL[1], "pad_token": SPECIAL[1]}
    config = {"model_max_length": max_length, "tokenizer_class": "CLIPTokenizer", "do_lower_case": True, **special}
    texts = {"vocab.json": json.dumps(vocab, ensure_ascii=False),
             "merges.txt": "#version: 0.2\n" + "".join(m + "\n" for m in merges),
             "tokenizer_config.json": json.dumps(config, indent=1),
             "special_tokens_map.json": json.dumps(special, indent=1)}
    for name, text in texts.items():
        atomic_write(folder / name, partial(_write_utf8, text))
    return folder


def _write_utf8(text: str, path: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def vocab_size(words: Iterable[str]) -> int:
    return len(build_vocab(words)[0])
