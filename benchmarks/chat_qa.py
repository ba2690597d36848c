"""Memory QA through memcli's chat path: how much gold evidence reaches the prompt, and what a real
small model answers from it.

    .venv/bin/python benchmarks/chat_qa.py [--conv 0] [--questions 80] [--caps 400,800,1200,1600,2000]
                                           [--no-model] [--no-ttft] [--store DIR] [--out FILE]

One LoCoMo conversation (the first by default) is ingested as a chat history (memcli's conversation
JSONL, as benchmarks/locomo.py does; each turn is tagged with its dia_id). The clock is the last
session's time.

1. Evidence in the prompt (no model needed beyond the starter's tokenizer): every question with
   evidence goes through ``ChatSession.prepare`` (incognito, nothing stored) with ``[chat]
   memory_tokens`` = each cap; the share of its gold turns among the memories in the prompt, beside
   recall@k of the same questions, and the landed packing (6 memories, 800 tokens) as a row.
   TTFT per cap: the median number of tokens a turn adds (notes + message) evaluated after a cached
   system prompt, on the starter model and on a random-weight Qwen2.5-0.5B-shape Q8_0 model (llama.cpp's
   speed does not depend on weight values), median of 3.
2. Answers (starter model SmolLM2-135M, greedy, memcli's small-model preset otherwise): the first
   ``--questions`` answerable questions (categories 1-4) under four prompts in the same run:
   no memory (memcli's path on an empty space), memcli (its own prompt), the most recent turns of the
   whole conversation that fit the same memory budget (truncated full history: recency instead of
   recall, same ``[chat] memory_tokens``), and the gold evidence turns (the ceiling), all in memcli's
   notes format. Per prompt: gold answer contained in the reply, token
   F1 (LoCoMo's normalisation), median reply tokens, share of replies the model ended itself, share
   that merely copy a memory line. Gap closed = (memcli − none) / (gold − none).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_note, machine_line, table
from locomo import DEFAULT_DATA, evidence, to_jsonl

from memcli.api import Memcli
from memcli.backends.base import ChatMessage
from memcli.prompts import chat as prompts
from memcli.records import Memory
from memcli.services import chat_prompt
from memcli.services.chat import ChatSession

LANDED = (6, 800)  # recall_k, memory_tokens as memcli first shipped
KS = (6, 10, 25)


def dia_ids(m: Memory) -> list[str]:
    return [t for t in m.tags if re.fullmatch(r"D\d+:\d+", t)]


def norm(text: str) -> str:
    text = text.lower().replace(",", "")
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the|and)\b", " ", text)
    return " ".join(text.split())


def f1(reply: str, gold: str) -> float:
    p, g = norm(reply).split(), norm(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if not p or not g or same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def copies_memory(reply: str, lines: Sequence[str]) -> bool:
    """The reply merely repeats a memory line: it opens like one ("(2023-05-08) ..." / "- [..."), or its
    first line is (most of) one of the notes shown."""
    first = reply.strip().splitlines()[0] if reply.strip() else ""
    if re.match(r"^\s*(?:[-*]\s*)?[\(\[]?\d{4}-\d{2}-\d{2}", first):
        return True
    f = norm(first)
    return len(f.split()) >= 6 and any(f in norm(line) for line in lines)


# -- part 1: evidence in the prompt -------------------------------------------------------------------
def evidence_rows(home: Path, space: str, qas: list[tuple[dict[str, Any], list[str]]], now: Any, caps: list[int], counter: Any) -> tuple[list[list[object]], dict[int, float]]:
    rows: list[list[object]] = []
    new_tokens: dict[int, float] = {}
    mem = Memcli(home=home)
    recall_at = {k: [] for k in KS}  # type: dict[int, list[float]]
    for qa, gold in qas:
        hits = mem.recall(qa["question"], k=max(KS), space=space, now=now, touch=False).hits
        ranked = [d for h in hits for d in dia_ids(h.memory)]
        for k in KS:
            recall_at[k].append(sum(g in ranked[:k] for g in gold) / len(gold))
    mem.close()
    settings = [(f"landed: {LANDED[0]} memories, {LANDED[1]} tokens", LANDED[1], LANDED[0])]
    settings += [(f"memory_tokens {c}", c, 0) for c in caps]
    for label, cap, k in settings:
        over: dict[tuple[str, str], object] = {("chat", "memory_tokens"): cap}
        if k:
            over[("chat", "recall_k")] = k
        m = Memcli(home=home, settings=over)
        session = ChatSession(m._ctx, counter, space=space, remember=False, background=False)
        shares, mem_tokens, shown, added = [], [], [], []
        t0 = time.perf_counter()
        for qa, gold in qas:
            plan = session.prepare(qa["question"], at=now)
            got = {d for h in plan.hits for d in dia_ids(h.memory)}
            shares.append(sum(g in got for g in gold) / len(gold))
            mem_tokens.append(plan.parts["memories"])
            shown.append(len(plan.hits))
            added.append(plan.parts["memories"] + plan.parts["message"])
        session.close()
        m.close()
        if not k:
            new_tokens[cap] = statistics.median(added)
        rows.append([label, f"{100 * statistics.mean(shares):.1f}", f"{statistics.median(shown):.0f}",
                     f"{statistics.median(mem_tokens):.0f}", f"{(time.perf_counter() - t0) * 1000 / len(qas):.0f}"])  # fmt: skip
        print(f"  {label}: {rows[-1][1]} % of gold evidence in the prompt", file=sys.stderr)
    for k in KS:
        rows.append([f"recall@{k} (same questions)", f"{100 * statistics.mean(recall_at[k]):.1f}", str(k), "", ""])
    return rows, new_tokens


def ttft(path: Path, n_new: int, prefix: int = 120, runs: int = 3) -> float:
    """Seconds to evaluate ``n_new`` tokens after a cached ``prefix`` and sample the first token."""
    import numpy as np
    from llama_cpp import Llama

    from memcli.backends.llama_chat import plain_weight_buffers

    with plain_weight_buffers():
        llm = Llama(model_path=str(path), n_ctx=4096, n_threads=2, n_threads_batch=2, verbose=False, seed=0)
    rng = np.random.default_rng(0)
    vocab = llm.n_vocab()
    ids = [int(x) for x in rng.integers(1000, min(vocab, 30000), prefix + n_new)]
    times = []
    for _ in range(runs):
        llm.reset()
        llm.eval(ids[:prefix])
        t = time.perf_counter()
        llm.eval(ids[prefix:])
        llm.sample(temp=0.0)
        times.append(time.perf_counter() - t)
    llm.close()
    return statistics.median(times)


# -- part 2: answers ----------------------------------------------------------------------------------
def notes(memories: Sequence[Memory]) -> str:
    ordered = sorted(memories, key=lambda m: m.event_at or m.recorded_at)
    return "\n".join([prompts.MEMORY_HEADER, *(chat_prompt.memory_line(m) for m in ordered), prompts.MEMORY_FOOTER])


def answer_rows(
    home: Path, space: str, qas: list[tuple[dict[str, Any], list[str]]], now: Any, model: Any, caps: Sequence[int]
) -> tuple[list[list[object]], dict[str, Any]]:
    mem = Memcli(home=home, settings={("chat", "temperature"): 0.0})
    session = ChatSession(mem._ctx, model, space=space, remember=False, background=False)
    empty = ChatSession(mem._ctx, model, space="empty-space", remember=False, background=False)
    default_cap = mem._ctx.settings.chat.memory_tokens
    others: dict[int, tuple[Memcli, ChatSession]] = {}
    for cap in caps:
        if cap != default_cap:
            m = Memcli(home=home, settings={("chat", "temperature"): 0.0, ("chat", "memory_tokens"): cap})
            others[cap] = (m, ChatSession(m._ctx, model, space=space, remember=False, background=False))
    sp = session.sampling
    by_id = {d: m for m in mem.list(space=space, limit=100_000).memories for d in dia_ids(m)}
    history = sorted(by_id.values(), key=lambda m: (m.event_at or m.recorded_at, m.id))
    system = session.system
    conds = ["no memory", "memcli", *(f"memcli, memory_tokens {c}" for c in others), "truncated history", "gold evidence"]
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in conds}

    def run(messages: Sequence[ChatMessage]) -> tuple[str, bool]:
        reply = "".join(model.stream(messages, max_tokens=sp.max_tokens, temperature=sp.temperature, top_p=sp.top_p,
                                     repeat_penalty=sp.repeat_penalty))  # fmt: skip
        return reply, model.last_finish == "stop"

    t0 = time.perf_counter()
    for i, (qa, gold) in enumerate(qas):
        q, answer = qa["question"], str(qa["answer"])
        plans: dict[str, tuple[Sequence[ChatMessage], list[str]]] = {}
        p = empty.prepare(q, at=now)
        plans["no memory"] = (p.messages, [])
        p = session.prepare(q, at=now)
        plans["memcli"] = (p.messages, [chat_prompt.memory_line(h.memory) for h in p.hits])
        for cap, (_, other) in others.items():
            p = other.prepare(q, at=now)
            plans[f"memcli, memory_tokens {cap}"] = (p.messages, [chat_prompt.memory_line(h.memory) for h in p.hits])
        room = mem._ctx.settings.chat.memory_tokens  # the same memory budget, filled by recency instead of recall
        recent: list[Memory] = []
        for m in reversed(history):
            room -= model.count_tokens(chat_prompt.memory_line(m)) + 1
            if room < 0:
                break
            recent.append(m)
        block = notes(recent)
        plans["truncated history"] = ((ChatMessage("system", system), ChatMessage("user", f"{block}\n\n{q}")), [chat_prompt.memory_line(m) for m in recent])
        golds = [by_id[g] for g in gold if g in by_id]
        block = notes(golds)
        plans["gold evidence"] = ((ChatMessage("system", system), ChatMessage("user", f"{block}\n\n{q}")), [chat_prompt.memory_line(m) for m in golds])
        for cond, (messages, lines) in plans.items():
            reply, ended = run(messages)
            results[cond].append({
                "q": q, "answer": answer, "reply": reply, "ended": ended, "category": qa["category"],
                "contained": norm(answer) in norm(reply) if norm(answer) else False, "f1": f1(reply, answer),
                "tokens": model.count_tokens(reply) if reply else 0, "copy": copies_memory(reply, lines),
            })  # fmt: skip
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(qas)} questions ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    session.close()
    empty.close()
    mem.close()
    for m, other in others.values():
        other.close()
        m.close()
    rows = []
    for cond, rs in results.items():
        rows.append([
            cond, f"{100 * statistics.mean(r['contained'] for r in rs):.1f}", f"{100 * statistics.mean(r['f1'] for r in rs):.1f}",
            f"{statistics.median(r['tokens'] for r in rs):.0f}", f"{100 * statistics.mean(r['ended'] for r in rs):.0f}",
            f"{100 * statistics.mean(r['copy'] for r in rs):.0f}",
        ])  # fmt: skip
    return rows, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--conv", type=int, default=0)
    ap.add_argument("--questions", type=int, default=80, help="answerable questions for part 2 (0 = all)")
    ap.add_argument("--caps", default="400,800,1200,1600,2000", help="[chat] memory_tokens values for part 1")
    ap.add_argument("--answer-caps", default="", help="part 2: also answer with these memory_tokens (comma-separated)")
    ap.add_argument("--no-model", action="store_true", help="part 1 only")
    ap.add_argument("--no-ttft", action="store_true", help="skip the TTFT measurements")
    ap.add_argument("--store", type=Path, help="keep the ingested conversation here between runs")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "chat_qa.json")
    args = ap.parse_args()
    from memcli.backends.llama_chat import LlamaChat
    from memcli.models.starter import starter_path

    conv = json.loads(args.data.read_text())[args.conv]
    print(machine_line() + " · " + load_note())
    with tempfile.TemporaryDirectory(prefix="memcli-chatqa-") as tmp:
        home = args.store or Path(tmp) / "home"
        space = f"conv-{args.conv}"
        path = Path(tmp) / "conv.jsonl"
        known, last = to_jsonl(conv, path)
        mem = Memcli(home=home)
        if not mem._ctx.store.catalog.spaces().get(space):
            t = time.perf_counter()
            mem.ingest([path], space=space)
            print(f"ingested {len(known)} turns in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        mem.close()
        now = last.astimezone()
        qas = [(qa, g) for qa in conv["qa"] if (g := evidence(qa, known))]
        starter = starter_path()
        assert starter is not None, "the starter model is not installed: ./scripts/setup"
        model = LlamaChat(starter, n_ctx=4096, n_threads=2)
        caps = [int(c) for c in args.caps.split(",")]
        print(f"\n## Evidence in the prompt: {len(qas)} questions with evidence, conversation {args.conv}\n")
        rows, new_tokens = evidence_rows(home, space, qas, now, caps, model)
        print(table(["prompt packing", "gold evidence in prompt %", "memories (median)", "memory tokens (median)", "ms/question"], rows))
        out: dict[str, Any] = {"evidence": rows}
        if not args.no_ttft:
            from bench_chat import model_path

            big = model_path(Path(tmp) if args.store is None else args.store)
            trows = []
            for cap, n in new_tokens.items():
                trows.append([cap, f"{n:.0f}", f"{ttft(starter, int(n)):.2f}", f"{ttft(big, int(n)):.2f}"])
            print("\nTime to first token for a turn's new tokens (notes + message) after a cached system prompt, s:\n")
            print(table(["memory_tokens", "new tokens (median)", "SmolLM2-135M Q4_1", "Qwen2.5-0.5B shape Q8_0"], trows))
            out["ttft"] = trows
        if not args.no_model:
            answerable = [(qa, g) for qa, g in qas if qa["category"] != 5]
            subset = answerable[: args.questions] if args.questions else answerable
            print(f"\n## Answers: SmolLM2-135M, {len(subset)} answerable questions (greedy)\n")
            acaps = [int(c) for c in args.answer_caps.split(",") if c]
            arows, results = answer_rows(home, space, subset, now, model, acaps)
            print(table(["prompt", "answer contained %", "token F1 %", "reply tokens (median)", "ended itself %", "copies a memory line %"], arows))
            none_c, ours_c, gold_c = (float(arows[i][1]) for i in (0, 1, -1))
            gap = (ours_c - none_c) / (gold_c - none_c) if gold_c != none_c else float("nan")
            print(f"\ngap closed (containment): {gap:.2f} (goal ≥ 0.5)")
            out.update({"answers": arows, "gap_closed": gap, "replies": results})
        model.close()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
