"""Cold-process wall times: what a user waits for when they type a memcli command.

Every row is a fresh process (the OS file cache is warm: one untimed run of each first). Rows are run
round-robin, so a burst of load elsewhere hits all rows alike. The floor is the least any
implementation can do for a recall: import chromadb, load the embedding model, embed one text.
A second part times the phases inside one cold `recall` process.

    .venv/bin/python benchmarks/bench_startup.py           # 10 runs per row, 10k-memory store
    .venv/bin/python benchmarks/bench_startup.py --quick   # 7 runs per row
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

QUERY = "what did the doctor say about the knee injury"

FLOOR = """
import chromadb
from llama_cpp import Llama
llm = Llama(model_path={model!r}, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
            n_threads={threads}, n_threads_batch={threads}, verbose=False)
v = llm.embed({query!r})
"""

RAW_PIPELINE = (
    FLOOR
    + """
from chromadb.config import Settings
client = chromadb.PersistentClient(path={chroma!r}, settings=Settings(anonymized_telemetry=False))
col = client.get_collection("memcli-default", embedding_function=None)
col.query(query_embeddings=[v], n_results=50, include=["distances"])
"""
)

# One cold recall, phase by phase, through the same objects the CLI uses.
PHASES = """
import time, json
t = [("start", time.perf_counter())]
def mark(name): t.append((name, time.perf_counter()))
import memcli.cli.app; mark("import memcli.cli (typer, rich)")
from memcli.api import Memcli
m = Memcli(); mark("import memcli.api + Memcli()")
store = m._ctx.store; mark("open catalog (SQLite) + reconcile")
store.index.client; mark("import chromadb + PersistentClient")
import llama_cpp; mark("import llama_cpp")
emb = m._ctx.embedder; mark("load embedding model + check_model")
qv = emb.embed_query({query!r}); mark("embed query")
store.index.query("default", qv, 50); mark("first Chroma query (loads the index)")
from memcli.store import Filter
store.catalog.keyword(Filter(space="default"), {query!r}, 50); mark("first FTS5 query")
m.recall({query!r}); mark("one full recall (now warm)")
print(json.dumps([(n, t[i + 1][1] - t[i][1]) for i, (n, _) in enumerate(t[1:])]))
"""


def embed_threads(home: Path, model: Path) -> int:
    from memcli.backends.llama_embedder import default_threads

    m = c.open_store(home, model)
    n = int(m._ctx.settings.embedding.n_threads) or default_threads()
    m.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="7 runs per row")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per row (default 10; quick 7; at least 7)")
    ap.add_argument("--size", type=int, default=10_000, help="memories in the recall store")
    ap.add_argument("--real", type=int, default=1000, help="of which get real embeddings (the rest random unit vectors)")
    ap.add_argument("--cache", type=Path, default=c.DEFAULT_CACHE, help=f"store cache (default {c.DEFAULT_CACHE})")
    ap.add_argument("--no-cache", dest="cache", action="store_const", const=None, help="build a fresh store in a temp dir")
    args = ap.parse_args()
    runs = max(7, args.runs or (7 if args.quick else 10))
    model = c.model_file(args.cache or c.DEFAULT_CACHE)
    info = c.build_store(args.size, real=args.real, model=model, cache=args.cache)
    threads = embed_threads(info.home, model)  # the floor uses the thread count memcli's embedder uses
    env = dict(os.environ, MEMCLI_HOME=str(info.home), MEMCLI_EMBEDDING_MODEL=str(model), NO_COLOR="1")
    py = sys.executable
    memcli = str(c.BIN / "memcli")
    fmt = {"model": str(model), "threads": threads, "query": QUERY, "chroma": str(info.home / "data" / "chroma")}
    rows: list[tuple[str, list[str]]] = [
        ("python -c pass", [py, "-c", "pass"]),
        ('python -c "import chromadb"', [py, "-c", "import chromadb"]),
        ("memcli --help", [memcli, "--help"]),
        ("memcli list (catalog only)", [memcli, "list"]),
        ("FLOOR: import chromadb + load model + embed 1 text", [py, "-c", FLOOR.format(**fmt)]),
        ("raw pipeline: floor + open Chroma + query n=50", [py, "-c", RAW_PIPELINE.format(**fmt)]),
        (f'memcli recall "…" ({args.size:,} memories)', [memcli, "recall", QUERY]),
    ]
    for _, argv in rows:  # warm the file cache; also fails fast on a broken command
        c.run_cold(argv, env)
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(runs):
        for name, argv in rows:
            times[name].append(c.run_cold(argv, env))

    floor = c.median(times[rows[4][0]])
    floor_min = min(times[rows[4][0]])
    base = c.median(times[rows[0][0]])
    goals = {
        "memcli --help": ("< 0.30 s", c.median(times["memcli --help"]) < 0.30),
        rows[6][0]: ("≤ 1.3× floor", c.median(times[rows[6][0]]) <= 1.3 * floor),
    }
    print("## bench_startup\n")
    print(c.machine_line() + "\n")
    print(
        f"Store: {info.home} — {info.size:,} memories ({info.real:,} with real MiniLM embeddings, the rest random "
        f"unit vectors; {'built in ' + format(info.build_s, '.1f') + ' s' if info.build_s else 'reused from cache'}). "
        f"{runs} timed runs per row, round-robin, after one untimed run each; embedding threads {threads}; {c.load_note()}.\n"
    )
    out = []
    for name, _ in rows:
        ts = times[name]
        g = goals.get(name)
        out.append(
            [
                name,
                f"{c.median(ts):.3f}",
                f"{min(ts):.3f}",
                f"{max(ts):.3f}",
                c.ratio(c.median(ts), base),
                c.ratio(c.median(ts), floor),
                c.ratio(min(ts), floor_min),
                "" if g is None else f"{g[0]}: {'met' if g[1] else 'MISSED'}",
            ]
        )
    print(c.table(["command", "median s", "min s", "max s", "÷ python", "÷ floor", "min ÷ floor min", "goal"], out))

    # Phases of one cold recall, medians over the runs.
    phases: dict[str, list[float]] = {}
    order: list[str] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run([py, "-c", PHASES.format(**fmt)], env=env, capture_output=True, text=True, check=True, cwd=c.ROOT)
        wall = time.perf_counter() - t0
        measured = json.loads(p.stdout.strip().splitlines()[-1])
        measured.append(("interpreter start + exit (wall − phases)", wall - sum(dt for _, dt in measured)))
        for name, dt in measured:
            if name not in phases:
                order.append(name)
            phases.setdefault(name, []).append(dt)
    total = sum(c.median(phases[n]) for n in order)
    print(f"\nPhases of one cold recall process, timed inside it (median of {runs}):\n")
    print(
        c.table(
            ["phase", "median ms", "share"],
            [[n, c.ms(c.median(phases[n])), f"{c.median(phases[n]) / total:.0%}"] for n in order]
            + [["sum", c.ms(total), "100%"]],
        )
    )


if __name__ == "__main__":
    main()
