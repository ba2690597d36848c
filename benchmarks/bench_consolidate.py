"""What `memcli consolidate` costs: seconds per 1,000 memories without an LLM, and LLM requests per new
memory with a scripted one.

    .venv/bin/python benchmarks/bench_consolidate.py [--quick] [--sizes 1000,4000]

Stores (real MiniLM embeddings, built fresh in a temp dir): 30 % facts of which a tenth are copies of
another (same words in other case/punctuation, or one word less: what dedupe merges), 40 % notes with a
few tags, 30 % conversation turns over 28 days.

Table 1, per size: a first run (everything is new) and an incremental run after 1 % more memories,
with the time of each step, against a baseline measured in the same process on the same store: the raw
libraries doing the searches consolidate cannot avoid (numpy pairwise similarity of the facts, one
Chroma query per linkable memory), i.e. the floor without bookkeeping, transactions or index updates.

Table 2: LLM requests per new memory, with a scripted model that answers every request validly
("unrelated" pairs, fixed summaries and profile), for a first run and a run after a day of new chat.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import TextGen, bench_settings, load_note, machine_line, model_file, open_store, ratio, table

from memcli.backends.base import ChatMessage

NOW = datetime(2026, 11, 1, 12, 0).astimezone()


class SchemaChat:
    """A ChatModel that answers each request validly for its schema, and counts requests per kind."""

    model_id = "scripted"
    n_ctx = 8192
    n_params = None
    last_finish = None

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float = 0.7, **sampling: float) -> Iterator[str]:
        yield "ok"

    def complete_json(
        self, messages: Sequence[ChatMessage], schema: dict[str, Any], *, max_tokens: int, cancel: threading.Event | None = None
    ) -> str:
        props = schema["properties"]
        if "relation" in props:
            kind, answer = "reconcile", {"relation": "unrelated", "text": ""}
        elif "summary" in props:
            kind, answer = "summarise", {"summary": "The user talked about several things that day."}
        else:
            style = {"formality": "neutral", "length": "short", "humour": "some", "notes": ""}
            kind, answer = "profile", {"facts": ["The user is a person."], "preferences": [], "style": style}
        self.calls[kind] = self.calls.get(kind, 0) + 1
        return json.dumps(answer)

    def close(self) -> None:
        pass


def populate(mem: Any, n: int, seed: int, start: datetime, days: int) -> int:
    from memcli.records import Kind
    from memcli.store import NewMemory

    rng = random.Random(seed)
    gen = TextGen(seed)
    emb = mem._ctx.embedder
    n_facts, n_notes = int(n * 0.3), int(n * 0.4)
    facts = [f"The user noted that {gen.text(rng.randint(6, 14)).rstrip('.').lower()}." for _ in range(n_facts - n_facts // 10)]
    copies = [t.upper() if rng.random() < 0.5 else t.replace(" that ", " ", 1) for t in rng.sample(facts, n_facts // 10)]
    span = days * 86400.0
    items: list[tuple[str, Kind, tuple[str, ...]]] = [(t, Kind.FACT, ()) for t in facts + copies]
    items += [
        (gen.text(rng.randint(10, 40)), Kind.NOTE, (rng.choice(["garden", "work", "dog", "travel", "home"]),))
        for _ in range(n_notes)
    ]
    items += [
        (f"{rng.choice(['user', 'assistant'])}: {gen.text(rng.randint(4, 20))}", Kind.EPISODE, ("chat",))
        for _ in range(n - len(items))
    ]
    rows = []
    for text, kind, tags in items:
        when = start.timestamp() + rng.random() * span
        rows.append((NewMemory(text, kind=kind, source="bench", tags=tags, event_at=when), emb.embed_documents([text])[0]))
    for i in range(0, len(rows), 500):
        mem._ctx.store.add("default", rows[i : i + 500], emb.model_id)
    return len(rows)


def baseline(mem: Any) -> float:
    """The searches alone: pairwise similarity of every fact, one Chroma query per note/fact/summary."""
    import numpy as np

    db = mem._ctx.store.catalog.db
    t = time.perf_counter()
    facts = [
        np.frombuffer(r[0], dtype=np.float32)
        for r in db.execute("SELECT embedding FROM memories WHERE kind = 'fact' AND state = 'active'")
    ]
    if facts:
        m = np.vstack(facts)
        for i in range(0, len(m), 100):
            _ = m[i : i + 100] @ m.T
    index = mem._ctx.store.index
    for (blob,) in db.execute("SELECT embedding FROM memories WHERE kind IN ('note', 'fact', 'summary') AND state = 'active'"):
        index.query("default", [float(x) for x in np.frombuffer(blob, dtype=np.float32)], 13)
    return time.perf_counter() - t


def step_times(report: Any) -> dict[str, float]:
    return {s.step: s.seconds for s in report.steps}


def bench_sizes(sizes: list[int], model: Path) -> list[list[str]]:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="memcli-bench-cons-") as d:
            mem = open_store(Path(d) / "home", model)
            built = populate(mem, n, 1, NOW - timedelta(days=28), 28)
            mem._ctx.store.index.count("default")  # open Chroma before timing (not consolidate's cost)
            base = baseline(mem)
            t = time.perf_counter()
            first = mem.consolidate(use_llm=False, now=NOW, force=True)  # the cost of the work, not the budget
            total = time.perf_counter() - t
            st = step_times(first)
            rows.append([
                f"{built:,}", "first run", f"{total:.2f}", f"{total / built * 1000:.2f}", f"{st['dedupe']:.2f}",
                f"{st['link']:.2f}", f"{st['decay']:.2f}", str(first.step("dedupe").counts.get("merged", 0)),
                str(first.step("link").counts.get("links", 0)), f"{base:.2f}", ratio(total, base),
            ])  # fmt: skip
            extra = populate(mem, max(10, n // 100), 2, NOW - timedelta(days=1), 1)
            t = time.perf_counter()
            inc = mem.consolidate(use_llm=False, now=NOW, force=True)
            total = time.perf_counter() - t
            st = step_times(inc)
            rows.append([
                f"+{extra}", "incremental", f"{total:.2f}", f"{total / extra * 1000:.2f}", f"{st['dedupe']:.2f}",
                f"{st['link']:.2f}", f"{st['decay']:.2f}", str(inc.step("dedupe").counts.get("merged", 0)),
                str(inc.step("link").counts.get("links", 0)), "", "",
            ])  # fmt: skip
            mem.close()
    return rows


def bench_llm(n: int, model: Path) -> list[list[str]]:
    rows = []
    from memcli.api import Memcli

    with tempfile.TemporaryDirectory(prefix="memcli-bench-cons-") as d:
        # No cap on requests per run: the point is how many the work needs.
        mem = Memcli(home=Path(d) / "home", settings={**bench_settings(model), ("consolidate", "max_llm_calls"): 0})
        chat = SchemaChat()
        for label, count, seed, start, days in (
            ("first run", n, 1, NOW - timedelta(days=28), 28),
            ("a day of new chat", n // 20, 3, NOW - timedelta(days=2), 1),
        ):
            added = populate(mem, count, seed, start, days)
            chat.calls.clear()
            t = time.perf_counter()
            report = mem.consolidate(model=chat, now=NOW, force=True)  # type: ignore[arg-type]
            dt = time.perf_counter() - t
            calls = sum(chat.calls.values())
            rows.append([
                label, f"{added:,}", str(calls), f"{calls / added:.3f}", str(chat.calls.get("reconcile", 0)),
                str(chat.calls.get("summarise", 0)), str(chat.calls.get("profile", 0)), f"{dt:.2f}",
                str(report.failures),
            ])  # fmt: skip
        mem.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one store of 1,000")
    ap.add_argument("--sizes", default="1000,4000")
    a = ap.parse_args()
    sizes = [1000] if a.quick else [int(x) for x in a.sizes.split(",")]
    model = model_file()
    print(f"# consolidate\n\n{machine_line()} · {load_note()}\n")
    print("## Without an LLM (dedupe, link, decay): seconds\n")
    print(table(
        ["memories", "run", "total s", "s per 1,000", "dedupe s", "link s", "decay s", "merged", "links",
         "baseline s (searches only)", "ratio"],
        bench_sizes(sizes, model),
    ))  # fmt: skip
    print("\n## LLM requests per new memory (scripted model)\n")
    print(table(
        ["run", "new memories", "LLM requests", "per new memory", "reconcile", "summarise", "profile", "s", "failures"],
        bench_llm(sizes[0], model),
    ))  # fmt: skip
    print(f"\n{load_note()}")


if __name__ == "__main__":
    main()
