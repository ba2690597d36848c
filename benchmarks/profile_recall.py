"""Where one recall's time goes at scale (issue 6): per-piece timings inside real recalls, and a
cProfile of the slowest one, on cached synthetic stores (``_common.build_store``; a 1M store takes
~30 min to build the first time, then it is reused from the cache).

Each piece is timed by wrapping the live method memcli calls (embed, the vector index query, the FTS5
keyword query, the all-terms abstention check, the catalog fetch of records and vectors); "rest" is
fusion (the learned fusion's features) and building the records.
With ``--compare SECTION.KEY=VALUE`` the same queries also run with that setting changed, in the same
process, alternating per query (and which goes first), so the two columns share the machine's load
and the page cache.

    .venv/bin/python benchmarks/profile_recall.py --sizes 10000,1000000
    .venv/bin/python benchmarks/profile_recall.py --sizes 1000000 --compare recall.keyword_max_docs=0
    .venv/bin/python benchmarks/profile_recall.py --sizes 10000 --compare recall.fusion=rrf,recall.candidates=50
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

PIECES = ("embed", "vector index", "keyword (FTS5)", "all-terms check", "catalog fetch")


def wrap_pieces(m: Any) -> c.Probe:
    store = m._ctx.store
    probe = c.Probe()
    probe.wrap(m._ctx.embedder, "embed_query", "embed")
    probe.wrap(store.index, "query", "vector index")
    probe.wrap(store.catalog, "keyword_hits", "keyword (FTS5)")
    probe.wrap(store.catalog, "matches_all_terms", "all-terms check")
    probe.wrap(store.catalog, "by_ids", "catalog fetch")
    probe.wrap(store.catalog, "embeddings", "catalog fetch")  # keyword-only candidates' vectors (learned fusion)
    return probe


def parse_setting(s: str) -> tuple[tuple[str, str], object]:
    key, _, value = s.partition("=")
    section, _, name = key.partition(".")
    v: object = value
    for cast in (int, float):
        try:
            v = cast(value)
            break
        except ValueError:
            pass
    return (section, name), v


def run_size(size: int, args: argparse.Namespace, model: Path) -> list[str]:
    info = c.build_store(size, real=min(args.real, size), model=model, cache=args.cache)
    variants: list[tuple[str, dict[tuple[str, str], object]]] = [("default", {})]
    if args.compare:  # one or more SECTION.KEY=VALUE, comma-separated, changed together
        variants.append((args.compare, dict(parse_setting(x) for x in args.compare.split(","))))
    qs = c.queries(args.queries)
    stores = [(name, c.open_store(info.home, model, settings=s)) for name, s in variants]
    for _, m in stores:  # warm up: model, HNSW index and SQLite pages
        for q in qs[:10]:
            m.recall(q, touch=False, now=c.NOW)
    per: dict[str, list[tuple[float, dict[str, float], str]]] = {name: [] for name, _ in stores}
    for i, q in enumerate(qs):
        # Alternate which setting goes first: the first to run a query pays its cold page reads.
        for name, m in stores if i % 2 == 0 else stores[::-1]:
            probe = wrap_pieces(m)
            t0 = time.perf_counter()
            m.recall(q, touch=False, now=c.NOW)
            total = time.perf_counter() - t0
            probe.remove()
            per[name].append((total, dict(probe.totals), q))
    out = [f"\n### {size:,} memories ({info.home.name}; {c.load_note()})\n"]
    rows: list[list[object]] = []
    for name, runs in per.items():
        for label, pick in (("p50", 50), ("p95", 95)):
            totals = [r[0] for r in runs]
            row: list[object] = [name, label, c.ms(c.pct(totals, pick))]
            for piece in PIECES:
                row.append(c.ms(c.pct([r[1].get(piece, 0.0) for r in runs], pick)))
            out_rest = [r[0] - sum(r[1].values()) for r in runs]
            row.append(c.ms(c.pct(out_rest, pick)))
            rows.append(row)
    out.append(c.table(["setting", "", "recall ms", *PIECES, "rest"], rows))
    out.append(f"\n{len(qs)} unfiltered queries of 2-6 Zipf words, k=10; each column is that piece's own percentile.\n")
    for name, m in stores:
        slow = max(per[name], key=lambda r: r[0])
        out.append(
            f"Slowest recall ({name}): {c.ms(slow[0])} ms for {slow[2]!r}: "
            + ", ".join(f"{k} {c.ms(v)}" for k, v in slow[1].items())
        )
        pr = cProfile.Profile()
        pr.enable()
        m.recall(slow[2], touch=False, now=c.NOW)
        pr.disable()
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(18)
        text = buf.getvalue()
        out.append("```\n" + text[text.find("ncalls") :].rstrip() + "\n```")
        m.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,1000000")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--real", type=int, default=500, help="memories with real MiniLM embeddings (as bench_scale)")
    ap.add_argument("--compare", help="SECTION.KEY=VALUE[,...]: also run with these settings, alternating per query")
    ap.add_argument("--cache", type=Path, default=c.DEFAULT_CACHE)
    args = ap.parse_args()
    model = c.model_file()
    print(f"# profile_recall — {c.machine_line()}")
    for size in (int(float(s)) for s in args.sizes.split(",")):
        print("\n".join(run_size(size, args, model)), flush=True)


if __name__ == "__main__":
    main()
