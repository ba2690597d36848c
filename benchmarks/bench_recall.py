"""In-process recall latency (query embedding included) at several store sizes, against raw baselines.

For each size it builds (or reuses) a synthetic store, then for every query times, interleaved:
raw ``llm.embed`` of the query, raw Chroma ``collection.query`` (n=candidates, with and without a
``where``), and ``Memcli.recall`` unfiltered / time window (~10%) / kind (~10%) / both (~1%).
It also sums where recall's time goes (embed, Chroma count + query, FTS5, catalog fetch, touch) and
prints a cProfile of a few recalls at the largest size.

    .venv/bin/python benchmarks/bench_recall.py            # 1k, 10k, 100k
    .venv/bin/python benchmarks/bench_recall.py --quick    # 1k, 10k, fewer queries
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

from memcli.records import Kind

GOALS_100K = {"unfiltered": 0.025, "filtered": 0.050}  # p95, seconds, query embedding included


@dataclass(frozen=True)
class Mode:
    name: str
    kinds: tuple[Kind, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.kinds or self.since or self.until)

    def where(self) -> dict[str, Any] | None:
        """The same Chroma filter memcli builds for this mode (written out here: the raw baseline)."""
        clauses: list[dict[str, Any]] = []
        if self.kinds:
            clauses.append({"kind": {"$in": [k.value for k in self.kinds]}})
        if self.since:
            clauses.append({"when": {"$gte": self.since.timestamp()}})
        if self.until:
            clauses.append({"when": {"$lt": self.until.timestamp()}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def modes() -> list[Mode]:
    since, until = c.window(0.10)
    return [
        Mode("unfiltered"),
        Mode("time window ~10%", since=since, until=until),
        Mode("kind=fact ~10%", kinds=(Kind.FACT,)),
        Mode("kind+time ~1%", kinds=(Kind.FACT,), since=since, until=until),
    ]


PIECES = ("embed", "chroma count", "chroma query", "keyword (FTS5)", "catalog by_ids", "touch")


def bench_size(size: int, args: argparse.Namespace, model: Path, qs: list[str]) -> list[str]:
    info = c.build_store(size, real=args.real, model=model, cache=args.cache)
    out = [f"\n### {size:,} memories\n"]
    out.append(
        f"store: {info.home} ({'built in ' + format(info.build_s, '.1f') + ' s' if info.build_s else 'reused from cache'}); "
        f"{info.real:,} real embeddings, the rest random unit vectors; {c.load_note()}\n"
    )
    m = c.open_store(info.home, model, threads=args.threads)
    emb = m._ctx.embedder
    store = m._ctx.store
    cand = m._ctx.settings.recall.candidates
    ms_ = modes()
    # Warm-up: load the model, open Chroma, fill caches.
    for q in qs[: args.warmup]:
        for md in ms_:
            m.recall(q, kinds=md.kinds, since=md.since, until=md.until, now=c.NOW)
    raw_col = store.index.client.get_collection("memcli-default", embedding_function=None)
    mem_col = store.index._col("default", create=False)  # the collection object memcli itself queries
    qvecs = [emb.embed_query(q) for q in qs]
    for md in ms_:
        raw_col.query(query_embeddings=[qvecs[0]], n_results=cand, where=md.where(), include=["distances"])

    probe = c.Probe()
    probe.wrap(emb, "embed_query", "embed")
    probe.wrap(mem_col, "count", "chroma count")
    probe.wrap(mem_col, "query", "chroma query")
    probe.wrap(store.catalog, "keyword_hits", "keyword (FTS5)")
    probe.wrap(store.catalog, "by_ids", "catalog by_ids")
    probe.wrap(store, "touch", "touch")

    t_embed: list[float] = []
    t_raw: dict[str, list[float]] = {md.name: [] for md in ms_}
    t_rec: dict[str, list[float]] = {md.name: [] for md in ms_}
    t_noemb: dict[str, list[float]] = {md.name: [] for md in ms_}  # recall minus its own query embedding
    pieces: dict[str, dict[str, float]] = {md.name: dict.fromkeys(PIECES, 0.0) for md in ms_}
    n_hits: dict[str, int] = {md.name: 0 for md in ms_}
    for q, qv in zip(qs, qvecs):
        t_embed.append(c.timed(partial(emb.llm.embed, q)))
        for md in ms_:
            w = md.where()
            raw_query = partial(raw_col.query, query_embeddings=[qv], n_results=cand, where=w, include=["distances"])
            t_raw[md.name].append(c.timed(raw_query))
            probe.reset()
            t0 = time.perf_counter()
            res = m.recall(q, kinds=md.kinds, since=md.since, until=md.until, now=c.NOW)
            t_rec[md.name].append(time.perf_counter() - t0)
            t_noemb[md.name].append(t_rec[md.name][-1] - probe.totals.get("embed", 0.0))
            n_hits[md.name] += len(res.hits)
            for k, v in probe.totals.items():
                pieces[md.name][k] += v
    probe.remove()

    e50, e95 = c.pct(t_embed, 50), c.pct(t_embed, 95)
    rows: list[list[object]] = [["raw llm.embed(query)", c.ms(e50), c.ms(e95), "", "", "", ""]]
    for md in ms_:
        r = t_raw[md.name]
        rows.append([f"raw chroma query n={cand}, {md.name}", c.ms(c.pct(r, 50)), c.ms(c.pct(r, 95)), "", "", "", ""])
    for md in ms_:
        r, raw = t_rec[md.name], t_raw[md.name]
        base50 = e50 + c.pct(raw, 50)
        base95 = e95 + c.pct(raw, 95)
        goal = ""
        if size >= 100_000:
            g = GOALS_100K["filtered" if md.filtered else "unfiltered"]
            goal = f"p95 ≤ {g * 1000:.0f} ms: {'met' if c.pct(r, 95) <= g else 'MISSED'}"
        rows.append(
            [
                f"memcli recall, {md.name} (avg {n_hits[md.name] / len(qs):.1f} hits)",
                c.ms(c.pct(r, 50)),
                c.ms(c.pct(r, 95)),
                f"{c.ms(base50)} / {c.ms(base95)}",
                f"{c.ratio(c.pct(r, 50), base50)} / {c.ratio(c.pct(r, 95), base95)}",
                f"{c.ms(c.pct(t_noemb[md.name], 50))} / {c.ms(c.pct(t_noemb[md.name], 95))}",
                goal,
            ]
        )
    out.append(
        c.table(
            [
                "case",
                "p50 ms",
                "p95 ms",
                "raw embed+chroma p50 / p95 ms",
                "memcli ÷ raw (p50 / p95)",
                "recall minus its embed p50 / p95 ms",
                "goal (100k)",
            ],
            rows,
        )
    )
    out.append(f"\n{len(qs)} queries after {args.warmup} warm-up rounds; k=10, candidates={cand}.\n")

    # Where the time goes: mean ms per recall, pieces timed inside real recalls.
    brows: list[list[object]] = []
    for md in ms_:
        mean_total = sum(t_rec[md.name]) / len(qs)
        per = {k: v / len(qs) for k, v in pieces[md.name].items()}
        other = mean_total - sum(per.values())
        brows.append([md.name, c.ms(mean_total), *(c.ms(per[k]) for k in PIECES), c.ms(other)])
    out.append("Where recall time goes (mean ms per recall):\n")
    out.append(c.table(["mode", "total", *PIECES, "rest (fusion, records)"], brows))

    if args.profile and size == max(args.sizes):
        out.append(profile(m, qs[: args.profile], ms_))
    m.close()
    return out


def profile(m: Any, qs: list[str], ms_: list[Mode]) -> str:
    out = []
    for md in (ms_[0], ms_[1]):
        pr = cProfile.Profile()
        pr.enable()
        for q in qs:
            m.recall(q, kinds=md.kinds, since=md.since, until=md.until, now=c.NOW)
        pr.disable()
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(14)
        text = buf.getvalue()
        body = text[text.find("ncalls") :] if "ncalls" in text else text
        out.append(f"\ncProfile, {len(qs)} recalls, {md.name} (top by own time):\n```\n{body.rstrip()}\n```")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1k and 10k, 100 queries (a smoke run, not for reporting)")
    ap.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")], default=None, help="e.g. 1000,10000,100000")
    ap.add_argument("--queries", type=int, default=None, help="timed queries per size (default 250; quick 100)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--real", type=int, default=0, help="memories that get real embeddings (default 0: all random)")
    ap.add_argument("--threads", type=int, default=0, help="[embedding] n_threads for memcli's embedder (0: memcli's default)")
    ap.add_argument("--profile", type=int, default=20, help="recalls to cProfile at the largest size (0: none)")
    ap.add_argument("--cache", type=Path, default=c.DEFAULT_CACHE, help=f"store cache (default {c.DEFAULT_CACHE})")
    ap.add_argument("--no-cache", dest="cache", action="store_const", const=None, help="build fresh stores in a temp dir")
    args = ap.parse_args()
    args.sizes = args.sizes or ([1000, 10_000] if args.quick else [1000, 10_000, 100_000])
    nq = args.queries or (100 if args.quick else 250)
    model = c.model_file(args.cache or c.DEFAULT_CACHE)
    print("## bench_recall\n")
    print(c.machine_line() + "\n")
    print(
        "Stored vectors are random unit vectors (plus --real real ones); queries are embedded by the real model. "
        "HNSW search cost depends on the graph size and dimension, not much on the values: random 384-d vectors "
        "are if anything a harder case (no cluster structure).\n"
    )
    for size in args.sizes:
        for line in bench_size(size, args, model, c.queries(nq)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
