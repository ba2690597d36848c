"""Prompt size per turn when LoCoMo conversations are replayed through chat's prompt builder.

    .venv/bin/python benchmarks/chat_prompt.py [--quick] [--convs N] [--data PATH] [--out FILE]

Each LoCoMo conversation (all 10 by default; ``--quick`` = the first 2) is replayed in a fresh
MEMCLI_HOME through ``ChatSession`` (memory on, ``background=False``, fact extraction off so only the
turns are stored as episodes and recalled). speaker_a is the user, speaker_b the assistant; each LoCoMo
session (a day) is a new chat session (``session.new()``), with the clock at that session's date-time
(+1 minute per exchange). Every user message goes through ``prepare`` (recall + prompt under
``[chat] budget_tokens``), the "model" streams speaker_b's actual next message, and ``finish`` stores
the exchange. Consecutive messages of one speaker are merged into one message; a session that opens
with speaker_b gets a short placeholder user message (``[new conversation]``) so that speaker_b's
opening is the assistant's reply; a session that ends with speaker_a ends with a user message that
has no reply. Image captions are appended as in ``locomo.py`` ("[shares an image: ...]").

The model is a replay, not an LLM: ``count_tokens`` is the embedder's tokenizer (MiniLM WordPiece), used
for memcli's prompt and for the baseline alike, so the ratio is fair (an LLM's BPE gives different
absolute counts). When a turn window folds, chat asks the model for a running summary; the stand-in
answer is the first sentence of each folded user message (newest kept), made without an LLM: its
content is not an LLM's, but its size is capped at ``[chat] summary_tokens`` by memcli whatever the
content, so the prompt sizes are what a real model would get.

Per turn: memcli's prompt tokens, measured on the messages ``prepare`` built (sum over messages of
tokens + 8 per message, the same per-message overhead memcli uses; checked against ``plan.total``),
the budget, the parts, and the full-history baseline = system prompt + every earlier message of the
whole conversation (all sessions) + this message, counted the same way. Raw numbers go to
``benchmarks/out/chat_prompt.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_settings, load_note, machine_line, median, model_file, pct, table
from locomo import DEFAULT_DATA, session_time

from memcli.api import Memcli
from memcli.backends.base import ChatMessage
from memcli.prompts.chat import SUMMARY_HEADER
from memcli.services.chat import ChatSession, PromptPlan

PER_MESSAGE = 8  # chat-template tokens per message, as memcli counts them (16 for system + user, 8 per turn)
PLACEHOLDER = "[new conversation]"
PARTS = ("system", "profile", "summary", "turns", "message", "memories")
GOAL = 90.0
OUT = Path(__file__).resolve().parent / "out" / "chat_prompt.json"


# -- the conversation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exchange:
    session: int  # LoCoMo session number
    at: datetime
    user: str
    reply: str  # "" when the session ends with the user's message


@dataclass
class ConvStats:
    sessions: int = 0
    locomo_turns: int = 0
    merged: int = 0  # messages merged into the previous one (same speaker)
    placeholders: int = 0  # sessions opened by speaker_b


def _text(turn: dict[str, Any]) -> str:
    text = str(turn["text"]).strip()
    if turn.get("blip_caption"):
        text += f" [shares an image: {turn['blip_caption']}]"
    return text


def exchanges(conv: dict[str, Any]) -> tuple[list[list[Exchange]], ConvStats]:
    """The conversation as chat sessions of (user message, reply) exchanges."""
    c = conv["conversation"]
    a = c["speaker_a"]
    st = ConvStats()
    sessions: list[list[Exchange]] = []
    n = 1
    while f"session_{n}_date_time" in c:
        turns = c.get(f"session_{n}") or []
        if turns:
            st.sessions += 1
            st.locomo_turns += len(turns)
            when = session_time(c[f"session_{n}_date_time"]).astimezone()
            msgs: list[tuple[bool, str]] = []  # (is the user, text)
            for t in turns:
                is_user = t["speaker"] == a
                if msgs and msgs[-1][0] == is_user:
                    msgs[-1] = (is_user, msgs[-1][1] + "\n" + _text(t))
                    st.merged += 1
                else:
                    msgs.append((is_user, _text(t)))
            if not msgs[0][0]:
                msgs.insert(0, (True, PLACEHOLDER))
                st.placeholders += 1
            ex: list[Exchange] = []
            for i in range(0, len(msgs), 2):
                reply = msgs[i + 1][1] if i + 1 < len(msgs) else ""
                ex.append(Exchange(n, when + timedelta(minutes=len(ex)), msgs[i][1], reply))
            sessions.append(ex)
        n += 1
    return sessions, st


# -- the replay model --------------------------------------------------------------------------------
def _first_sentence(text: str, max_words: int = 30) -> str:
    s = re.split(r"(?<=[.!?])\s+", " ".join(text.split()), maxsplit=1)[0]
    words = s.split()
    return " ".join(words[:max_words]) + (" …" if len(words) > max_words else "")


class ReplayModel:
    """A ChatModel that replays the conversation: the reply is speaker_b's actual next message."""

    model_id = "locomo-replay"
    n_ctx = 4096
    n_params = None
    last_finish = None

    def __init__(self, count: Callable[[str], int], summary_tokens: int) -> None:
        self._count = count
        self.summary_tokens = summary_tokens
        self.next_reply = ""
        self.summaries = 0
        self.extractions = 0

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float = 0.7, **sampling: float) -> Iterator[str]:
        yield self.next_reply

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
    ) -> str:
        if "summary" in schema.get("properties", {}):
            self.summaries += 1
            return json.dumps({"summary": self._summary(messages)})
        self.extractions += 1
        return json.dumps({"facts": [], "forget": []})

    def _summary(self, messages: Sequence[ChatMessage]) -> str:
        """Stand-in for an LLM summary: the earlier summary's sentences, then the first sentence of each
        folded user message; the oldest sentences go first when it is over the summary budget."""
        system = messages[0].content
        earlier = system.split(SUMMARY_HEADER + "\n", 1)[1] if SUMMARY_HEADER in system else ""
        sentences = [s for s in re.split(r"(?<=[.!?…])\s+", earlier) if s.strip()]
        sentences += [_first_sentence(m.content) for m in messages[1:-1] if m.role == "user" and m.content != PLACEHOLDER]
        while len(sentences) > 1 and self._count(" ".join(sentences)) > self.summary_tokens:
            sentences.pop(0)
        return " ".join(sentences) or "(nothing yet)"

    def close(self) -> None:
        pass


# -- the replay -------------------------------------------------------------------------------------
def prompt_tokens(messages: Sequence[ChatMessage], count: Callable[[str], int]) -> int:
    return sum(count(m.content) + PER_MESSAGE for m in messages)


def replay(index: int, conv: dict[str, Any], settings: dict[tuple[str, str], object], tmp: Path) -> dict[str, Any]:
    sessions, st = exchanges(conv)
    home = tmp / f"home-{index}"
    mem = Memcli(home=home, settings=settings)
    count = mem._ctx.embedder.count_tokens
    now = [sessions[0][0].at]
    model = ReplayModel(count, mem._ctx.settings.chat.summary_tokens)
    session = ChatSession(mem._ctx, model, remember=True, clock=lambda: now[0], background=False)
    session.learn = False  # only episodes: no fact extraction, no profile
    system_tokens = count(session.system) + PER_MESSAGE
    history = 0  # tokens of every earlier message of the whole conversation (all sessions)
    rows: list[dict[str, Any]] = []
    folds = 0
    for s_i, ex in enumerate(sessions):
        if s_i:
            session.new()
        for e in ex:
            now[0] = e.at
            before = session.window_start
            t0 = time.perf_counter()
            plan: PromptPlan = session.prepare(e.user, at=e.at)
            t1 = time.perf_counter()
            model.next_reply = e.reply
            reply = "".join(session.stream(plan))
            in_prompt = {t.memory_id for t in session.turns[plan.window_start :]}
            t2 = time.perf_counter()
            session.finish(e.user, reply, plan, at=e.at)
            t3 = time.perf_counter()
            folds += plan.window_start != before
            measured = prompt_tokens(plan.messages, count)
            user_tokens = count(e.user) + PER_MESSAGE
            baseline = system_tokens + history + user_tokens
            rows.append(
                {
                    "session": e.session,
                    "at": e.at.isoformat(),
                    "total": plan.total,
                    "measured": measured,
                    "budget": plan.budget,
                    "parts": dict(plan.parts),
                    "baseline": baseline,
                    "window_turns": len(plan.messages) - 2,
                    "hits": len(plan.hits),
                    "dup_hits": sum(1 for h in plan.hits if h.memory.id in in_prompt),
                    "abstained": plan.abstained,
                    "prepare_s": t1 - t0,
                    "finish_s": t3 - t2,
                }
            )
            history += user_tokens + (count(e.reply) + PER_MESSAGE if e.reply else 0)
    session.close()
    chat = mem._ctx.settings.chat
    mem.close()
    return {
        "settings": {
            k: getattr(chat, k) for k in ("budget_tokens", "memory_tokens", "summary_tokens", "profile_tokens", "recall_k")
        },
        "conv": conv.get("sample_id", str(index)),
        "sessions": st.sessions,
        "locomo_turns": st.locomo_turns,
        "merged": st.merged,
        "placeholders": st.placeholders,
        "summaries": model.summaries,
        "extractions": model.extractions,
        "folds": folds,
        "turns": rows,
    }


# -- report -----------------------------------------------------------------------------------------
def reduction(r: dict[str, Any]) -> float:
    return 100.0 * (1.0 - float(r["measured"]) / float(r["baseline"]))


def stays_from(rows: Sequence[dict[str, Any]]) -> str:
    """The first turn from which memcli stays ≥ GOAL % smaller than the full history."""
    below = [i for i, r in enumerate(rows) if reduction(r) < GOAL]
    if not below:
        return "1"
    return "never" if below[-1] == len(rows) - 1 else str(below[-1] + 2)


def report(results: list[dict[str, Any]], chat: dict[str, int], elapsed: float, command: str) -> None:
    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    print("# Chat prompt size per turn: LoCoMo replayed through ChatSession\n")
    print(f"machine: {machine_line()} · {platform.platform()} · os.cpu_count() {os.cpu_count()} · {load_note()}")
    print(f"command: `{command}` · {elapsed:.0f} s\n")
    print(
        "[chat] " + ", ".join(f"{k} {v}" for k, v in chat.items()) + ". Tokens are MiniLM "
        f"WordPiece (the embedder's tokenizer) for both sides, + {PER_MESSAGE} per message. A turn = one user "
        "message (consecutive messages of one speaker merged). Summaries are a stand-in (first sentence of each "
        "folded user message, no LLM), capped at [chat] summary_tokens whatever their content. Fact extraction off.\n"
    )
    rows = []
    all_turns = [r for c in results for r in c["turns"]]
    for c in results:
        t = c["turns"]
        last = t[-1]
        rows.append(
            [
                c["conv"],
                c["sessions"],
                len(t),
                last["baseline"],
                last["measured"],
                f"{reduction(last):.1f}",
                f"{mean([r['measured'] for r in t]):.0f}",
                max(r["measured"] for r in t),
                sum(1 for r in t if r["measured"] > r["budget"] or r["total"] > r["budget"]),
                stays_from(t),
                c["folds"],
            ]
        )
    print(
        table(
            ["conv", "sessions", "turns", "full history @last", "memcli @last", "reduction @last %", "memcli mean",
             "memcli max", "budget exceeded", f"≥{GOAL:.0f}% from turn", "window folds"],
            rows,
        )
    )  # fmt: skip
    lasts = [reduction(c["turns"][-1]) for c in results]
    token_weighted = 100.0 * (1 - sum(r["measured"] for r in all_turns) / sum(r["baseline"] for r in all_turns))
    exceeded = sum(1 for r in all_turns if r["measured"] > r["budget"] or r["total"] > r["budget"])
    print()
    print(
        table(
            ["overall", "value"],
            [
                ["conversations / turns", f"{len(results)} / {len(all_turns)}"],
                ["mean reduction at the last turn", f"{mean(lasts):.1f} %"],
                [f"min reduction at the last turn (goal ≥ {GOAL:.0f} % in every conversation)", f"{min(lasts):.1f} %"],
                ["conversations meeting the goal at the last turn", f"{sum(1 for x in lasts if x >= GOAL)} / {len(lasts)}"],
                ["mean reduction over all turns", f"{mean([reduction(r) for r in all_turns]):.1f} %"],
                ["token-weighted reduction over all turns (Σ memcli / Σ full)", f"{token_weighted:.1f} %"],
                ["memcli tokens per turn: mean / max", f"{mean([r['measured'] for r in all_turns]):.0f} / "
                 f"{max(r['measured'] for r in all_turns)}"],
                ["turns over the budget (must be 0)", str(exceeded)],
                ["plan.total ≠ tokens of plan.messages", str(sum(1 for r in all_turns if r["total"] != r["measured"]))],
                ["recalled memories already in the prompt's turns", str(sum(r["dup_hits"] for r in all_turns))],
                ["turns where recall abstained", f"{sum(1 for r in all_turns if r['abstained'])}"],
                ["summaries asked for / extraction requests", f"{sum(c['summaries'] for c in results)} / "
                 f"{sum(c['extractions'] for c in results)}"],
                ["placeholder user messages (sessions opened by speaker_b)", str(sum(c["placeholders"] for c in results))],
            ],
        )
    )  # fmt: skip
    print()
    share_rows = []
    for p in PARTS:
        share_rows.append(
            [
                p,
                f"{mean([r['parts'][p] for r in all_turns]):.0f}",
                f"{100 * mean([r['parts'][p] / r['measured'] for r in all_turns]):.1f} %",
            ]
        )
    overhead = [r["measured"] - sum(r["parts"][p] for p in PARTS) for r in all_turns]
    share_rows.append(
        ["headers, separators, per-message", f"{mean(overhead):.0f}",
         f"{100 * mean([o / r['measured'] for o, r in zip(overhead, all_turns)]):.1f} %"]
    )  # fmt: skip
    print(table(["where memcli's tokens go (all turns)", "mean tokens", "mean share"], share_rows))
    print()
    prep = [r["prepare_s"] for r in all_turns]
    fin = [r["finish_s"] for r in all_turns]
    both = [a + b for a, b in zip(prep, fin)]
    print(
        table(
            ["time per turn (ms, for information)", "median", "p95"],
            [
                ["prepare (recall + prompt)", f"{1000 * median(prep):.1f}", f"{1000 * pct(prep, 95):.1f}"],
                ["finish (embed + store 2 episodes)", f"{1000 * median(fin):.1f}", f"{1000 * pct(fin, 95):.1f}"],
                ["prepare + finish", f"{1000 * median(both):.1f}", f"{1000 * pct(both, 95):.1f}"],
            ],
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the first 2 conversations (a smoke run)")
    ap.add_argument("--convs", type=int, default=0, help="only the first N conversations (0 = all 10)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--budget", type=int, default=0, help="[chat] budget_tokens for this run (0 = the config's, 3000)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"raw per-turn numbers as JSON (default {OUT})")
    args = ap.parse_args()
    data = json.loads(args.data.read_text())
    n = 2 if args.quick else args.convs
    if n:
        data = data[:n]
    command = " ".join([".venv/bin/python", "benchmarks/chat_prompt.py", *sys.argv[1:]])
    settings = bench_settings(model_file())
    if args.budget:
        settings["chat", "budget_tokens"] = args.budget
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="memcli-chat-prompt-") as tmp:
        for i, conv in enumerate(data):
            results.append(replay(i, conv, settings, Path(tmp)))
            print(f"conversation {i + 1}/{len(data)} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    report(results, results[0]["settings"], elapsed, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "machine": machine_line(), "conversations": results}, indent=1))
    print(f"\nraw per-turn numbers: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
