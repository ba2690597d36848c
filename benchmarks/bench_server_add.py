"""Single adds on a Chroma server store, with the change log split into segments vs in one collection.

For each size N a real `chroma run` on 127.0.0.1 gets two databases; each gets a synthetic store of
N memories written in bulk (``_common.build_store``: 5,000 memories per transaction), one with the
change log segmented as built (``SEGMENT_BYTES``, and a bulk transaction alone in a sealed segment:
``BULK_BYTES``), one segmented by size only, and one with segmenting disabled (every record in one
collection, as before segments). Then, alternating
between the two stores so that load on the machine hits both alike, it times:

- command start: a fresh ``Memcli`` opening the store (connect + sync), ``--opens`` times each;
- ``--adds`` single ``Memcli.add`` calls each (query embedding, duplicate check, one transaction: its
  change-log append included), and the time spent in the change-log appends alone.

    .venv/bin/python benchmarks/bench_server_add.py                     # N = 10,000 and 50,000
    .venv/bin/python benchmarks/bench_server_add.py --sizes 2000 --adds 20   # quick
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import _common as c

import memcli.backends.chroma_server as cs

# (SEGMENT_BYTES, BULK_BYTES): as built; segments rolled over by size only; one collection (as before).
LAYOUTS = {
    "segments": (cs.SEGMENT_BYTES, cs.BULK_BYTES),
    "by size only": (cs.SEGMENT_BYTES, 10**15),
    "one collection": (10**15, 10**15),
}


def use(layout: str) -> None:
    cs.SEGMENT_BYTES, cs.BULK_BYTES = LAYOUTS[layout]


def run_size(size: int, args: argparse.Namespace, root: Path, model: Path) -> list[dict[str, Any]]:
    from chroma_server import ChromaServer

    server = ChromaServer.start(root / f"server-{size}")
    try:
        stores: dict[str, tuple[dict[tuple[str, str], object], Path]] = {}
        out: dict[str, dict[str, Any]] = {}
        for layout in LAYOUTS:
            use(layout)
            settings: dict[tuple[str, str], object] = {("store", "url"): server.url, ("store", "database"): server.new_database()}
            info = c.build_store(size, real=min(args.real, size), model=model, cache=root / layout, settings=settings)
            stores[layout] = (settings, info.home)
            out[layout] = {"layout": layout, "size": size, "build_s": info.build_s, "open": [], "add": [], "append": []}
            print(f"{size:,} {layout}: built in {info.build_s:.0f} s", file=sys.stderr)
        for _ in range(args.opens):  # command start: connect + sync, alternating
            for layout, (settings, home) in stores.items():
                use(layout)
                t0 = time.perf_counter()
                m = c.open_store(home, model, settings=settings)
                m.list(limit=1)
                out[layout]["open"].append(time.perf_counter() - t0)
                m.close()
        opened = {layout: c.open_store(home, model, settings=settings) for layout, (settings, home) in stores.items()}
        probes = {}
        for layout, m in opened.items():
            m.list(limit=1)
            probes[layout] = c.Probe()
            probes[layout].wrap(m._ctx.store.catalog.journal.log, "append", "append")
        gen = c.TextGen(c.SEED + 7)
        for _ in range(args.adds):
            for layout, m in opened.items():
                use(layout)
                probes[layout].reset()
                text = gen.text(20)
                t0 = time.perf_counter()
                m.add(text)
                out[layout]["add"].append(time.perf_counter() - t0)
                out[layout]["append"].append(probes[layout].totals.get("append", 0.0))
        for layout, m in opened.items():
            out[layout]["segments"] = len(m._ctx.store.catalog.journal.log.segments())
            probes[layout].remove()
            m.close()
        return list(out.values())
    finally:
        server.stop()
        use("segments")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,50000", help="store sizes (comma-separated)")
    ap.add_argument("--adds", type=int, default=50, help="single adds timed per store")
    ap.add_argument("--opens", type=int, default=5, help="command starts timed per store")
    ap.add_argument("--real", type=int, default=200, help="memories with real MiniLM embeddings (the rest random)")
    args = ap.parse_args()
    model = c.model_file()  # convert once, outside the timings
    print(
        f"# bench_server_add\n\n{c.machine_line()}; {c.load_note()}; SEGMENT_BYTES {cs.SEGMENT_BYTES:,}, BULK_BYTES {cs.BULK_BYTES:,}\n"
    )
    results: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="memcli-server-add-"))
    try:
        for size in [int(x) for x in args.sizes.split(",") if x]:
            results += run_size(size, args, root, model)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    for r in results:
        base = next(x for x in results if x["size"] == r["size"] and x["layout"] == "one collection")
        add = c.median(r["add"])
        rows.append(
            [
                f"{r['size']:,}",
                r["layout"],
                r["segments"],
                c.ms(c.median(r["open"])),
                c.ms(add),
                c.ms(c.pct(r["add"], 90)),
                f"{1 / add:.1f}",
                c.ms(c.median(r["append"])),
                c.ratio(c.median(base["add"]), add),
                f"{r['build_s']:.0f}",
            ]
        )
    headers = [
        "memories",
        "change log",
        "segments",
        "open+sync ms (median)",
        "add ms (median)",
        "add p90 ms",
        "adds/s",
        "log append ms (median)",
        "speed-up vs one collection",
        "bulk build s",
    ]
    print(c.table(headers, rows))
    print(f"\n{c.load_note()} (at the end)")


if __name__ == "__main__":
    main()
