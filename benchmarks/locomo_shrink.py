"""What `consolidate` and `prune` do to a store built from all of LoCoMo: size, recall latency and
LoCoMo recall accuracy, before and after, in one run.

    .venv/bin/python benchmarks/locomo_shrink.py                       # builds the store (~11 min)
    .venv/bin/python benchmarks/locomo_shrink.py --keep DIR            # ... and keeps it in DIR
    .venv/bin/python benchmarks/locomo_shrink.py --store DIR           # reuses a kept store

The scenario (there is no single "right" one for forgetting, so several horizons are measured):
1. every LoCoMo conversation goes in through memcli's ingest, one space each (as benchmarks/locomo.py);
2. the user *uses* it: every other question (the even-numbered ones) is asked once as a real recall,
   which counts as a recall of what it returns (the retention curve's strength grows with recalls);
3. `consolidate` runs without an LLM (none is available offline here: dedupe, reconcile by time,
   link, decay; the summarise and profile steps are skipped and say so);
4. `prune --yes --purge` runs as if H days had passed since the ingest, for H in --horizons, each on
   a fresh copy of the consolidated store.
After each stage: active memories, bytes of the store on disk (HOME/data: catalog + vector index), recall p50/p95 over every question
(in-process, query embedding included), and recall accuracy @5/@10 overall, for the asked half, for
the never-asked half, and per category (@10).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
from locomo import CATEGORIES, DEFAULT_DATA, evidence, score, to_jsonl

from memcli.api import Memcli


def build(home: Path, data: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Ingest every conversation; returns the meta needed to ask its questions later."""
    mem = Memcli(home=home)
    meta: dict[str, Any] = {}
    try:
        for i, conv in enumerate(data):
            path = work / f"conv-{i}.jsonl"
            known, last = to_jsonl(conv, path)
            report = mem.ingest([path], space=f"conv-{i}")
            assert report.count("skipped") == 0, report.files
            meta[str(i)] = {"space": f"conv-{i}", "known": sorted(known), "last": last.isoformat()}
            print(f"  ingested conversation {i + 1}/{len(data)}", file=sys.stderr, flush=True)
    finally:
        mem.close()
    (home / "locomo-meta.json").write_text(json.dumps(meta))
    return meta


def questions(data: list[dict[str, Any]], meta: dict[str, Any]) -> list[tuple[str, str, datetime, list[str], int, bool]]:
    """(space, question, reference time, gold evidence, category, asked) for every question with evidence."""
    out = []
    for i, conv in enumerate(data):
        m = meta[str(i)]
        known = set(m["known"])
        now = datetime.fromisoformat(m["last"]).astimezone()
        for j, qa in enumerate(conv["qa"]):
            gold = evidence(qa, known)
            if gold:
                out.append((m["space"], qa["question"], now, gold, qa["category"], j % 2 == 0))
    return out


def disk_bytes(home: Path) -> int:
    """The store's bytes (catalog and vector index; not the embedding model kept beside them)."""
    return sum(p.stat().st_size for p in (home / "data").rglob("*") if p.is_file())


def active(mem: Memcli) -> int:
    return int(mem._ctx.store.catalog.db.execute("SELECT count(*) FROM memories WHERE state = 'active'").fetchone()[0])


def measure(home: Path, qs: list[tuple[str, str, datetime, list[str], int, bool]]) -> dict[str, Any]:
    mem = Memcli(home=home)
    try:
        acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        times = []
        for space, q, now, gold, cat, asked in qs:
            t = time.perf_counter()
            hits = mem.recall(q, k=10, space=space, now=now, touch=False).hits
            times.append(time.perf_counter() - t)
            ranked = [tag for h in hits for tag in h.memory.tags if tag.startswith("D")]
            for k, v in score(ranked, gold).items():
                if k > 10:
                    continue
                for group in ("all", "asked" if asked else "never asked", f"cat{cat}"):
                    acc[group][k].append(v)
        n = active(mem)
    finally:
        mem.close()

    def avg(xs: list[float]) -> float:
        return 100.0 * sum(xs) / len(xs) if xs else float("nan")

    return {
        "memories": n,
        "bytes": disk_bytes(home),
        "p50": c.median(times),
        "p95": c.pct(times, 95),
        "acc": {g: {k: avg(v) for k, v in by_k.items()} for g, by_k in acc.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--store", type=Path, help="a home kept by an earlier run (--keep): skip the ingest")
    ap.add_argument("--keep", type=Path, help="keep the built store here for later runs")
    ap.add_argument("--horizons", default="0,30,90,180,365", help="days after the ingest at which prune runs")
    args = ap.parse_args()
    data = json.loads(args.data.read_text())
    horizons = [int(h) for h in args.horizons.split(",")]
    print(c.machine_line())
    with tempfile.TemporaryDirectory(prefix="memcli-shrink-") as tmp:
        work = Path(tmp)
        base = work / "base"
        t0 = time.perf_counter()
        if args.store:
            shutil.copytree(args.store, base)
            meta = json.loads((base / "locomo-meta.json").read_text())
        else:
            meta = build(base, data, work)
            if args.keep:
                shutil.copytree(base, args.keep, dirs_exist_ok=True)
        print(f"store ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        qs = questions(data, meta)
        stages: list[tuple[str, dict[str, Any]]] = [("as ingested", measure(base, qs))]

        # The user asks every other question once: real recalls, counted.
        mem = Memcli(home=base)
        for space, q, now, _, _, asked in qs:
            if asked:
                mem.recall(q, k=10, space=space, now=now)
        mem.close()

        used = work / "used"
        shutil.copytree(base, used)
        mem = Memcli(home=used)
        t = time.perf_counter()
        consolidated = defaultdict(int)
        for m in meta.values():
            report = mem.consolidate(space=m["space"], use_llm=False, force=True)  # measuring the shrink, not the budget
            for step in report.steps:
                for key, v in step.counts.items():
                    consolidated[f"{step.step}.{key}"] += v
        consolidate_s = time.perf_counter() - t
        mem.close()
        stages.append(("consolidated (no LLM)", measure(used, qs)))

        today = datetime.now().astimezone()
        pruned: dict[int, int] = {}
        for h in horizons:
            home = work / f"pruned-{h}"
            shutil.copytree(used, home)
            mem = Memcli(home=home)
            n = 0
            for m in meta.values():
                r = mem.prune(space=m["space"], now=today + timedelta(days=h), apply=True, purge=True, force=True)
                n += len(r.pruned)
            mem.close()
            pruned[h] = n
            stages.append((f"+ prune --purge at +{h} days", measure(home, qs)))
            shutil.rmtree(home)
            print(f"  horizon +{h} d: {n} pruned", file=sys.stderr, flush=True)

    first = stages[0][1]
    print(f"\n{len(qs)} questions ({sum(q[5] for q in qs)} asked once before consolidating), {len(data)} conversations")
    print(f"consolidate: {consolidate_s:.1f} s; " + ", ".join(f"{k} {v}" for k, v in sorted(consolidated.items()) if v))
    rows = []
    for name, s in stages:
        a = s["acc"]
        rows.append(
            [
                name,
                s["memories"],
                f"{s['bytes'] / 1e6:.1f}",
                f"{s['bytes'] / first['bytes']:.2f}",
                c.ms(s["p50"]),
                c.ms(s["p95"]),
                f"{a['all'][5]:.1f}",
                f"{a['all'][10]:.1f}",
                f"{a['all'][10] - first['acc']['all'][10]:+.1f}",
                f"{a['asked'][10]:.1f}",
                f"{a['never asked'][10]:.1f}",
            ]
        )
    print(
        c.table(
            [
                "stage",
                "memories",
                "MB on disk",
                "size ratio",
                "recall p50 ms",
                "p95 ms",
                "@5",
                "@10",
                "Δ@10",
                "@10 asked",
                "@10 never asked",
            ],
            rows,
        )
    )
    print("\nper category, @10:")
    print(
        c.table(
            ["stage", *CATEGORIES.values()],
            [[name, *(f"{s['acc'][f'cat{k}'][10]:.1f}" for k in CATEGORIES)] for name, s in stages],
        )
    )
    print("\npruned per horizon: " + ", ".join(f"+{h} d: {n}" for h, n in pruned.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
