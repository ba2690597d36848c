"""The user's profile: the bounded text about them that is in every chat prompt.

`memcli consolidate` writes it as a ``profile`` memory (stable facts, preferences, style); until one
exists, it is the most important current facts, newest first among equals. Either way it is cut to
``[chat] profile_tokens`` so it can never crowd out the conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memcli.context import Context
from memcli.records import Kind, Memory
from memcli.store import Filter

SCAN = 500  # facts considered (newest first); a profile is a few dozen lines at most


def profile_text(ctx: Context, space: str, budget: int, count: Callable[[str], int]) -> tuple[str, tuple[Memory, ...]]:
    """(profile text, the memories it came from)."""
    catalog = ctx.store.catalog
    if not catalog.spaces().get(space):
        return "", ()
    profiles, _ = catalog.page(Filter(space=space, kinds=(Kind.PROFILE.value,)), 5, 0)
    current = [m for m in profiles if m.current]
    if current:
        newest = current[0]
        return _fit([newest.text], budget, count), (newest,)
    facts, _ = catalog.page(Filter(space=space, kinds=(Kind.FACT.value,)), SCAN, 0)
    facts = [m for m in facts if m.current]
    facts.sort(key=lambda m: (not m.pinned, -m.importance, -m.access_count, -m.recorded_at.timestamp()))
    lines: list[str] = []
    used: list[Memory] = []
    total = 0
    for m in facts:
        line = f"- {m.text}"
        n = count(line) + 1
        if total + n > budget:
            continue
        lines.append(line)
        used.append(m)
        total += n
    return "\n".join(lines), tuple(used)


def _fit(lines: list[str], budget: int, count: Callable[[str], int]) -> str:
    text = "\n".join(lines)
    while text and count(text) > budget:
        text = text[: int(len(text) * 0.9)].rsplit(" ", 1)[0]
    return text


@dataclass(frozen=True)
class Profile:
    """The user's profile as a chat prompt sees it (``Memcli.profile``): the text and the memories behind it."""

    space: str
    text: str
    memories: tuple[Memory, ...]

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "text": self.text, "memory_ids": [m.id for m in self.memories]}


def profile(ctx: Context, space: str | None = None) -> Profile:
    """The profile of ``space``, within ``[chat] profile_tokens`` counted by the embedding model's
    tokenizer (no chat model is loaded to read it; the counts are close)."""
    space = ctx.space(space)
    text, used = profile_text(ctx, space, ctx.settings.chat.profile_tokens, ctx.embedder.count_tokens)
    return Profile(space, text, used)
