"""Filtered recall: what each step costs now, and what the alternatives would cost, on one store.

Measures the pieces behind bench_recall's "where the time goes" table on the same synthetic store,
next to options memcli could use instead (all with the same real query embeddings):

- Chroma ``count()`` (memcli calls it before every query) and an unfiltered query, the baseline;
- Chroma ``where`` on the time window (~10 %) and on the kind (~10 %);
- the ids in the window from the catalog: as the schema is now, and with a covering expression index
  (built on a temporary copy of the catalog: the store is not changed), then Chroma ``query(ids=...)``;
- an unfiltered Chroma over-fetch (n=500) post-filtered on the returned metadata;
- FTS5: memcli's keyword query (joined with ``memories`` and filtered) vs the FTS5 table alone.

    .venv/bin/python benchmarks/bench_filters.py            # 100k memories, 100 queries
    .venv/bin/python benchmarks/bench_filters.py --quick    # 10k memories, 40 queries
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

from memcli.store import Filter, fts_query

ACTIVE_WINDOW = (
    "SELECT id FROM memories WHERE space = 'default' AND state = 'active' "
    "AND coalesce(event_at, recorded_at) >= ? AND coalesce(event_at, recorded_at) < ?"
)
COVERING = "CREATE INDEX bench_when ON memories(space, state, coalesce(event_at, recorded_at), id)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10k memories, 40 queries")
    ap.add_argument("--size", type=int, default=None, help="memories (default 100000; quick 10000)")
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=c.DEFAULT_CACHE, help=f"store cache (default {c.DEFAULT_CACHE})")
    args = ap.parse_args()
    size = args.size or (10_000 if args.quick else 100_000)
    nq = args.queries or (40 if args.quick else 100)
    model = c.model_file(args.cache)
    info = c.build_store(size, real=0, model=model, cache=args.cache)
    m = c.open_store(info.home, model)
    emb, store = m._ctx.embedder, m._ctx.store
    db = store.catalog.db
    col = store.index.client.get_collection("memcli-default", embedding_function=None)
    qs = c.queries(nq)
    qv = [emb.embed_query(q) for q in qs]
    since, until = c.window(0.10)
    s, u = since.timestamp(), until.timestamp()
    time_where = {"$and": [{"when": {"$gte": s}}, {"when": {"$lt": u}}]}

    with c.scratch() as tmp:
        shutil.copy(info.home / "data" / "memcli.sqlite3", tmp / "copy.sqlite3")
        indexed = sqlite3.connect(tmp / "copy.sqlite3")
        indexed.execute(COVERING)
        window_ids = [r[0] for r in indexed.execute(ACTIVE_WINDOW, (s, u))]

        def overfetch(v: list[float]) -> list[str]:
            r: Any = col.query(query_embeddings=[v], n_results=500, include=["metadatas"])
            return [i for i, md in zip(r["ids"][0], r["metadatas"][0]) if s <= md["when"] < u][:50]

        def fts_alone(q: str) -> list[Any]:
            sql = "SELECT rowid, bm25(memory_fts, 1.0, 0.6) AS s FROM memory_fts WHERE memory_fts MATCH ? ORDER BY s LIMIT ?"
            rows: list[Any] = db.execute(sql, (fts_query(q), 50)).fetchall()
            return rows

        def q50(v: list[float], **kw: Any) -> Any:
            return col.query(query_embeddings=[v], n_results=50, include=["distances"], **kw)

        few = max(5, nq // 10)  # the slow full-table scans get fewer repetitions
        cases: list[tuple[str, list[Callable[[], object]]]] = [
            ("Chroma count() (memcli: before every query)", [col.count] * nq),
            ("Chroma query n=50, unfiltered (baseline)", [partial(q50, v) for v in qv]),
            ("Chroma query n=50, where time window ~10%", [partial(q50, v, where=time_where) for v in qv]),
            ("Chroma query n=50, where kind=fact ~10%", [partial(q50, v, where={"kind": {"$in": ["fact"]}}) for v in qv]),
            ("catalog: ids in window, schema as now", [lambda: db.execute(ACTIVE_WINDOW, (s, u)).fetchall()] * few),
            (
                "catalog: ids in window, covering expression index",
                [lambda: indexed.execute(ACTIVE_WINDOW, (s, u)).fetchall()] * nq,
            ),
            (f"Chroma query n=50, ids=<{len(window_ids):,} window ids>", [partial(q50, v, ids=window_ids) for v in qv[:few]]),
            ("Chroma unfiltered n=500 + post-filter on metadata", [partial(overfetch, v) for v in qv]),
            (
                "memcli catalog.keyword (FTS5 ⋈ memories, filtered)",
                [partial(store.catalog.keyword, Filter(space="default"), q, 50) for q in qs],
            ),
            ("FTS5 table alone, ORDER BY bm25 LIMIT 50", [partial(fts_alone, q) for q in qs]),
        ]
        results = {name: [c.timed(fn) for fn in fns] for name, fns in cases}
        indexed.close()
    m.close()
    base = c.median(results[cases[1][0]])
    print(f"## bench_filters ({size:,} memories, {nq} queries)\n")
    print(c.machine_line() + f" · {c.load_note()}\n")
    rows = [
        [name, len(ts), c.ms(c.pct(ts, 50)), c.ms(c.pct(ts, 95)), c.ratio(c.median(ts), base)] for name, ts in results.items()
    ]
    print(c.table(["step", "runs", "p50 ms", "p95 ms", "÷ unfiltered Chroma query"], rows))
    print(
        "\nids=<…> + covering index is the catalog-side prefilter: ids from SQLite, exact search by Chroma over them. "
        "The over-fetch keeps the ~10% of 500 neighbours inside the window (about 50)."
    )


if __name__ == "__main__":
    main()
