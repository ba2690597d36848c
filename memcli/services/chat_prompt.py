"""The parts of the chat prompt that need no model and no store: which memories go in, how they read,
and how a reply is sampled. Pure functions, so the prompt's shape is testable on its own.

Packing: the memory budget (``[chat] memory_tokens``) is filled in recall's rank order, so when it
bites the lowest-ranked memories are the ones left out; what is kept is then shown oldest first,
the order a conversation is read in. (memcli first packed a fixed 6 memories and walked them oldest
first, dropping the newest whatever their rank: 72.6 % of LoCoMo's gold evidence reached the prompt
while recall@25 was 90.5 %.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memcli.config import ChatSettings
from memcli.prompts import chat as prompts
from memcli.records import Hit, Kind, Memory
from memcli.text.intent import Need

SMALL_MODEL_PARAMS = 1_000_000_000  # below this: the small-model sampling preset, and extraction by rule


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    repeat_penalty: float
    preset: str  # "small", "large" or "config" (what chose the values, for reports)

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("max_tokens", "temperature", "top_p", "repeat_penalty", "preset")}


# Measured on SmolLM2-135M (benchmarks/chat_qa.py): at temperature 0.7 it wanders off the memories and
# repeats itself; near-greedy sampling with a repetition penalty keeps it on the answer, and a reply
# of a few sentences rarely needs more than 200 tokens.
_SMALL = {"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.15, "max_reply_tokens": 200}
_SAMPLING_KEYS = ("temperature", "top_p", "repeat_penalty", "max_reply_tokens")


def sampling_for(cs: ChatSettings, user_set: Callable[[str], bool], n_params: int | None) -> Sampling:
    """The reply's sampling: [chat] values, except that with ``sampling = "auto"`` a model under 1B
    parameters gets the small-model preset for every key the user did not set themselves."""
    values: dict[str, float] = {k: float(getattr(cs, k)) for k in _SAMPLING_KEYS}
    preset = "config"
    if cs.sampling == "auto":
        small = n_params is not None and n_params < SMALL_MODEL_PARAMS
        preset = "small" if small else "large"
        if small:
            values.update({k: v for k, v in _SMALL.items() if not user_set(k)})
    return Sampling(int(values["max_reply_tokens"]), values["temperature"], values["top_p"], values["repeat_penalty"], preset)


def is_assistant_turn(m: Memory) -> bool:
    """One of the assistant's own replies in a memcli chat (never evidence about the user)."""
    return m.kind is Kind.EPISODE and m.source.startswith("chat:") and m.text.startswith("assistant: ")


def memory_line(m: Memory) -> str:
    """How one memory reads in the prompt: its day, then its text, with a chat turn's speaker named
    from the model's point of view. Quote marks that could close the block are neutralised."""
    text = m.text
    if m.kind is Kind.EPISODE and m.source.startswith("chat:"):
        if text.startswith("user: "):
            text = "the user said: " + text[6:]
        elif text.startswith("assistant: "):
            text = "you (the assistant) said: " + text[11:]
    when = m.event_at or m.recorded_at
    day = f"({when.astimezone().strftime('%Y-%m-%d')}) " if when else ""
    return day + " ".join(text.replace("[End of notes.]", "[End of notes]").split())


def pack(hits: Sequence[Hit], cap: int, max_n: int, count: Callable[[str], int]) -> tuple[Hit, ...]:
    """The memories that fit ``cap`` tokens, taken by rank (at most ``max_n``), in reading order."""
    used = count(prompts.MEMORY_HEADER) + count(prompts.MEMORY_FOOTER) + 2
    kept: list[Hit] = []
    for h in hits:
        if len(kept) >= max_n:
            break
        n = count(memory_line(h.memory)) + 1
        if used + n > cap:
            continue  # a long memory does not fit; a shorter, lower-ranked one still may
        kept.append(h)
        used += n
    return tuple(sorted(kept, key=lambda h: (h.memory.event_at or h.memory.recorded_at, h.rank)))


def memory_block(kept: Sequence[Hit], need: Need) -> str:
    """The notes that precede the message: "" for small talk and for a statement nothing relates to; a
    question that found nothing is told so (the model should say it does not remember, not guess)."""
    if kept:
        return "\n".join([prompts.MEMORY_HEADER, *(memory_line(h.memory) for h in kept), prompts.MEMORY_FOOTER])
    return prompts.NO_MEMORY if need is Need.FULL else ""


def user_content(message: str, block: str) -> str:
    """The last user message: the notes first, the message last (the model answers what comes last)."""
    return f"{block}\n\n{message}" if block else message
