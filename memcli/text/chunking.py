"""Split text into chunks that fit an embedding model, along the text's own structure.

Paragraphs first, then sentences, then words: a chunk boundary inside a sentence is the last resort.
The token counter is the model's own tokenizer, so "fits" means what the model will actually see.
"""

from __future__ import annotations

import re
from collections.abc import Callable

SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def _pieces(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Break ``text`` into pieces that each fit, preferring the coarsest boundaries."""
    if fits(text):
        return [text]
    for splitter in (re.compile(r"\n\s*\n"), re.compile(r"\n"), SENTENCE_END, re.compile(r"\s+")):
        parts = [p for p in splitter.split(text) if p.strip()]
        if len(parts) > 1:
            out: list[str] = []
            for p in parts:
                out.extend(_pieces(p, fits))
            return out
    # One unbreakable run (a 10k-character URL): cut it by characters.
    half = max(1, len(text) // 2)
    return _pieces(text[:half], fits) + _pieces(text[half:], fits)


def split_text(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """Greedily pack structure-respecting pieces into chunks of at most ``max_tokens`` tokens."""
    text = text.strip()
    if not text:
        return []

    def fits(s: str) -> bool:
        # Characters bound tokens from above for every tokenizer we use (a token is >= 1 char):
        # this skips the tokenizer for the common short case.
        return len(s) <= max_tokens // 2 or count_tokens(s) <= max_tokens

    if fits(text):
        return [text]
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, fits):
        candidate = f"{current}\n\n{piece}" if current else piece
        if current and not fits(candidate):
            chunks.append(current)
            current = piece
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks
