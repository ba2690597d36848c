"""Ingest throughput of a 10,000-message chat export, next to raw embedding in the same run.

A synthetic ChatGPT ``conversations.json`` (conversations of alternating user/assistant messages, each
a regeneration-free branch with real times; Zipf-sampled vocabulary, users ~10 words, assistants ~30)
goes through ``Memcli.ingest`` once, as `memcli ingest conversations.json` would. Raw embedding is
``llm.embed`` on the very Llama object memcli uses, one text per call, on a sample of the same
messages before and after the ingest (load elsewhere drifts; the mean of both is the baseline):

- raw, message text: what the messages alone cost to embed;
- raw, memcli's inputs: the exact strings ingest embeds (the message, its day, its conversation's
  title and its neighbours' text as keys: longer inputs, so a slower rate by design).

    .venv/bin/python benchmarks/bench_chat_export.py                # 10,000 messages, samples of 500
    .venv/bin/python benchmarks/bench_chat_export.py --messages 2000 --sample 200   # quicker
    .venv/bin/python benchmarks/bench_chat_export.py --neighbour-keys 0   # without neighbours in the keys
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

GOAL = 0.90  # ingest ÷ raw throughput


def export(n_messages: int, per_conversation: int, seed: int) -> tuple[list[dict[str, Any]], list[str]]:
    gen = c.TextGen(seed)
    t0 = 1_700_000_000.0
    convs: list[dict[str, Any]] = []
    texts: list[str] = []
    for k in range(0, n_messages, per_conversation):
        n = min(per_conversation, n_messages - k)
        mapping: dict[str, Any] = {"root": {"id": "root", "parent": None, "children": ["m0"], "message": None}}
        start = t0 + 3600 * k
        for i in range(n):
            role = "user" if i % 2 == 0 else "assistant"
            text = gen.text(10 if role == "user" else 30)
            texts.append(text)
            mapping[f"m{i}"] = {
                "id": f"m{i}",
                "parent": "root" if i == 0 else f"m{i - 1}",
                "children": [f"m{i + 1}"] if i + 1 < n else [],
                "message": {
                    "id": f"m{i}",
                    "author": {"role": role, "metadata": {}},
                    "create_time": start + 30 * i,
                    "content": {"content_type": "text", "parts": [text]},
                    "recipient": "all",
                    "metadata": {},
                },
            }
        convs.append(
            {"title": gen.text(4).rstrip("."), "create_time": start, "mapping": mapping, "current_node": f"m{n - 1}", "id": f"c{k}"}
        )
    return convs, texts


def raw_rate(llm: Any, texts: list[str]) -> float:
    start = time.perf_counter()
    for t in texts:
        llm.embed(t)
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--per-conversation", type=int, default=20)
    ap.add_argument("--sample", type=int, default=500, help="messages embedded raw before and after the ingest")
    ap.add_argument("--neighbour-keys", type=int, default=None, help="[ingest] neighbour_keys for this run (default: memcli's)")
    args = ap.parse_args()
    model = c.model_file()
    print("## bench_chat_export\n")
    print(c.machine_line() + "\n")
    print(f"{c.load_note()} at start.\n")
    with c.scratch() as work:
        convs, texts = export(args.messages, args.per_conversation, c.SEED + 17)
        path = work / "conversations.json"
        path.write_text(json.dumps(convs), encoding="utf-8")
        keys = {} if args.neighbour_keys is None else {("ingest", "neighbour_keys"): args.neighbour_keys}
        mem = c.open_store(work / "home", model, settings=keys)
        mem.add("warm-up text so the store, the index and the model are open")
        llm = mem._ctx.embedder.llm  # the Llama object ingest uses (memcli caches it per process)
        llm.embed("warm up")

        from memcli.services.ingest_files import Source
        from memcli.services.ingest_plan import plan_export
        from memcli.store import embed_input

        planned = plan_export(mem._ctx, Source(f"file:{path}", str(path), "chat-export", path), path.read_text()).memories
        step = max(1, len(texts) // args.sample)
        step += 1 - step % 2  # odd: an even step over even-length conversations would sample only user messages
        sample_text = texts[::step][: args.sample]
        sample_input = [embed_input(m.text, m.keys) for m in planned[::step][: args.sample]]
        tokens = [len(llm.tokenize(s.encode())) for s in (sample_text[0], sample_input[0])]

        before = (raw_rate(llm, sample_text), raw_rate(llm, sample_input))
        seen: list[Any] = []
        probe = c.Probe()
        probe.wrap(mem._ctx.embedder, "embed_documents", "embed")
        probe.wrap(mem._ctx.store, "apply", "write")
        start = time.perf_counter()
        report = mem.ingest([path], progress=seen.append)
        spent = time.perf_counter() - start
        probe.remove()
        after = (raw_rate(llm, sample_text), raw_rate(llm, sample_input))
        assert report.count("added") == 1 and report.chunks_added == len(planned), report.to_json()["counts"]
        messages = seen[-1].messages_done
        assert messages == args.messages, messages
        first_embed = next(i for i, p in enumerate(seen) if not p.reading)
        rate = messages / spent
        raw_text = (before[0] + after[0]) / 2
        raw_input = (before[1] + after[1]) / 2
        rows = [
            ["raw llm.embed, message text", f"{raw_text:.1f}", f"{before[0]:.1f} / {after[0]:.1f}", "", ""],
            ["raw llm.embed, memcli's inputs (text + keys)", f"{raw_input:.1f}", f"{before[1]:.1f} / {after[1]:.1f}", "", ""],
            [
                f"Memcli.ingest(conversations.json), {messages:,} messages",
                f"{rate:.1f}",
                f"{spent:.0f} s in all",
                f"{rate / raw_text:.2f} / {rate / raw_input:.2f}",
                f"≥ {GOAL:.2f}: {'met' if rate / raw_text >= GOAL else 'MISSED'} / {'met' if rate / raw_input >= GOAL else 'MISSED'}",
            ],
        ]
        print(
            f"\n{len(convs)} conversations of {args.per_conversation} messages; raw samples of {len(sample_text)} "
            f"messages before / after; first message {tokens[0]} tokens alone, {tokens[1]} as memcli embeds it; "
            f"memcli's embedding threads: {llm.context_params.n_threads}; "
            f"[ingest] neighbour_keys = {mem._ctx.settings.ingest.neighbour_keys}.\n"
        )
        print(c.table(["method", "messages/s", "before / after", "÷ raw (text / inputs)", "goal (text / inputs)"], rows))
        t = probe.totals
        print(
            f"\nWhere the ingest's {spent:.0f} s went: embedding {t.get('embed', 0.0):.0f} s, writing (SQLite + Chroma) "
            f"{t.get('write', 0.0):.1f} s, the rest (reading, parsing, planning, diffing) "
            f"{spent - t.get('embed', 0.0) - t.get('write', 0.0):.1f} s; progress reports: {len(seen)} "
            f"({first_embed} while reading)."
        )
        mem.close()


if __name__ == "__main__":
    main()
