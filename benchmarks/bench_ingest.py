"""Write throughput: memcli add / ingest next to raw llama-cpp-python embedding of the same texts.

For short (~10-word) and ~100-word texts, in rounds (each round new texts, every method on the same
texts, methods interleaved so load elsewhere hits them alike):

- raw: ``llm.embed(text)``, one text per call, on the very Llama object memcli uses (same threads);
- ``Memcli.add(text)`` one text per call (what `memcli add` does per invocation, minus process start);
- ``Memcli.ingest(dir)`` with one .txt file per text;
- ``Memcli.ingest(file)`` with one Markdown file holding one section per text (one batched write).

Then it shows where ``add`` spends its time, and raw embedding with 1 vs 2 threads, idle and next to
one busy process (embedding threads = cores is fragile when anything else runs).

    .venv/bin/python benchmarks/bench_ingest.py            # 3 rounds of 300 short + 80 long texts
    .venv/bin/python benchmarks/bench_ingest.py --quick    # 2 rounds of 100 short + 25 long texts
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

GOAL = 0.90  # memcli ÷ raw throughput
METHODS = (
    "raw llm.embed",
    "raw llm.embed + raw Chroma upsert, 1 per call",
    "Memcli.add",
    "ingest: 1 file per text",
    "ingest: 1 file, 1 section per text",
)
STORES = METHODS[2:]
PIECES = ("embed", "count_tokens", "by_hash (dedupe)", "SQLite writes", "Chroma upsert", "by_ids (read back)")


def texts_for(kind: str, n: int, seed: int) -> list[str]:
    gen = c.TextGen(seed)
    words = 10 if kind == "short" else 100
    return [gen.text(words) for _ in range(n)]


def run_length(kind: str, n: int, rounds: int, block: int, model: Path, work: Path) -> list[str]:
    stores = {meth: c.open_store(work / f"{kind}-{i}", model) for i, meth in enumerate(STORES)}
    m_add = stores["Memcli.add"]
    llm = m_add._ctx.embedder.llm  # the one Llama object all these stores share (memcli caches it)
    for m in stores.values():
        m.add("warm-up text so the store, the index and the model are open")
    llm.embed("warm up")
    raw_col = m_add._ctx.store.index.client.get_or_create_collection(
        "bench-raw", metadata={"hnsw:space": "cosine"}, embedding_function=None
    )

    # Per-job probe totals: the embedder is shared, but each job runs alone and writes to its own store.
    probe = c.Probe()
    emb = m_add._ctx.embedder
    probe.wrap(emb, "embed_documents", "embed")
    probe.wrap(emb, "count_tokens", "count_tokens")
    for m in stores.values():
        probe.wrap(m._ctx.store.catalog, "by_hash", "by_hash (dedupe)")
        probe.wrap(m._ctx.store, "apply", "apply")
        probe.wrap(m._ctx.store.index, "upsert", "Chroma upsert")
        probe.wrap(m._ctx.store.catalog, "by_ids", "by_ids (read back)")
    pieces: dict[str, dict[str, float]] = {meth: {} for meth in STORES}

    rates: dict[str, list[float]] = {meth: [] for meth in METHODS}
    total = dict.fromkeys(METHODS, 0.0)
    for r in range(rounds):
        texts = texts_for(kind, n, seed=c.SEED + 100 * r + (0 if kind == "short" else 1))
        spent = dict.fromkeys(METHODS, 0.0)
        # Blocks of texts, every method on each block in turn: load bursts elsewhere hit all methods.
        for b in range(0, n, block):
            part = texts[b : b + block]
            files = work / f"{kind}-files-{r}-{b}"
            files.mkdir()
            for i, t in enumerate(part):
                (files / f"note-{i:05d}.txt").write_text(t + "\n")
            one = work / f"{kind}-one-{r}-{b}.md"
            one.write_text("".join(f"## section {i}\n\n{t}\n\n" for i, t in enumerate(part)))

            def raw(part: list[str] = part) -> None:
                for t in part:
                    llm.embed(t)

            def raw_chroma(part: list[str] = part, key: str = f"{kind}-{r}-{b}") -> None:
                for i, t in enumerate(part):
                    raw_col.upsert(ids=[f"{key}-{i}"], embeddings=[llm.embed(t)], metadatas=[{"kind": "note", "when": 0.0}])

            def add(part: list[str] = part) -> None:
                for t in part:
                    m_add.add(t)

            jobs: dict[str, Callable[[], Any]] = {
                METHODS[0]: raw,
                METHODS[1]: raw_chroma,
                METHODS[2]: add,
                METHODS[3]: partial(stores[METHODS[3]].ingest, [files]),
                METHODS[4]: partial(stores[METHODS[4]].ingest, [one]),
            }
            for meth, job in jobs.items():
                probe.reset()
                spent[meth] += c.timed(job)
                acc = pieces.setdefault(meth, {})
                for k, v in probe.totals.items():
                    acc[k] = acc.get(k, 0.0) + v
        for meth in METHODS:
            rates[meth].append(n / spent[meth])
            total[meth] += spent[meth]
    probe.remove()
    for meth in STORES:
        count = stores[meth].stats().kinds.get("note", 0)
        assert count == 1 + n * rounds, f"{meth}: expected {1 + n * rounds} memories, found {count}"
        stores[meth].close()

    raw_rates = rates[METHODS[0]]
    rows = []
    for meth in METHODS:
        rs = rates[meth]
        rel = c.median([x / b for x, b in zip(rs, raw_rates)])  # ratio within each round, then the median
        rows.append(
            [
                meth,
                f"{c.median(rs):.1f}",
                " ".join(f"{x:.1f}" for x in rs),
                f"{rel:.2f}",
                f"≥ {GOAL:.2f}: {'met' if rel >= GOAL else 'MISSED'}" if meth in STORES else "",
            ]
        )
    words = "~10-word" if kind == "short" else "~100-word"
    threads = llm.context_params.n_threads
    out = [f"\n### {words} texts ({n} per round × {rounds} rounds, blocks of {block}, memcli's embedding threads: {threads})\n"]
    out.append(c.table(["method", "median texts/s", "per round", "÷ raw (median of rounds)", "goal"], rows))
    total_n = n * rounds
    brows = []
    for meth in METHODS[:1] + STORES:
        per = {k: v / total_n for k, v in pieces.get(meth, {}).items()}
        per["SQLite writes"] = per.get("apply", 0.0) - per.get("Chroma upsert", 0.0)
        if meth == METHODS[0]:
            per["embed"] = total[meth] / total_n
        mean_ms = total[meth] / total_n
        rest = mean_ms - sum(per.get(k, 0.0) for k in PIECES)
        brows.append([meth, c.ms(mean_ms), *(c.ms(per.get(k, 0.0)) for k in PIECES), c.ms(rest)])
    out.append(f"\nWhere the time goes (mean ms per text, {words}; ingest embeds text + keys, i.e. file stem and heading):\n")
    out.append(c.table(["method", "total", *PIECES, "rest (parse, files, …)"], brows))
    return out


def threads_under_contention(model: Path, n_short: int, n_long: int) -> list[str]:
    from llama_cpp import Llama

    short = texts_for("short", n_short, c.SEED + 7)
    long = texts_for("long", n_long, c.SEED + 8)
    llms = {
        th: Llama(
            model_path=str(model),
            embedding=True,
            n_ctx=512,
            n_batch=512,
            n_ubatch=512,
            n_threads=th,
            n_threads_batch=th,
            verbose=False,
        )
        for th in (1, 2)
    }
    rows = []
    load = c.load_note()
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for th, llm in llms.items():
                llm.embed("warm up")
                ts = [c.timed(partial(llm.embed, t)) for t in short]
                tl = [c.timed(partial(llm.embed, t)) for t in long]
                rows.append(
                    [
                        "+1 busy process" if busy else "as found (see loadavg)",
                        th,
                        f"{len(ts) / sum(ts):.1f}",
                        f"{c.ms(c.pct(ts, 50))} / {c.ms(c.pct(ts, 95))}",
                        f"{len(tl) / sum(tl):.1f}",
                        f"{c.ms(c.pct(tl, 50))} / {c.ms(c.pct(tl, 95))}",
                    ]
                )
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    title = "raw llm.embed, 1 vs 2 threads, as found and with one more busy process"
    out = [f"\n### {title} ({os.cpu_count()} cores; at start: {load})\n"]
    out.append(
        c.table(["load", "threads", "short texts/s", "short p50 / p95 ms", "100-word texts/s", "100-word p50 / p95 ms"], rows)
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 100 short + 25 long texts")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--short", type=int, default=None, help="short texts per round (default 300)")
    ap.add_argument("--long", type=int, default=None, help="~100-word texts per round (default 80)")
    ap.add_argument("--no-contention", action="store_true", help="skip the 1-vs-2-threads contention table")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    n_short = args.short or (100 if args.quick else 300)
    n_long = args.long or (25 if args.quick else 80)
    model = c.model_file()
    print("## bench_ingest\n")
    print(c.machine_line() + "\n")
    print(
        f"Texts: Zipf-sampled vocabulary words. Reference numbers measured before on this machine: raw 142 short "
        f"texts/s, 22.5 ~100-word texts/s. {c.load_note()}."
    )
    with c.scratch() as work:
        for kind, n in (("short", n_short), ("long", n_long)):
            out = run_length(kind, n, rounds, 20 if kind == "short" else 5, model, work)
            print("\n".join(out), flush=True)
    if not args.no_contention:
        print("\n".join(threads_under_contention(model, 100, 15 if args.quick else 20)))


if __name__ == "__main__":
    main()
