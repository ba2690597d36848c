"""LoCoMo retrieval benchmark through memcli's own ingest and recall.

    .venv/bin/python benchmarks/locomo.py [--data ../shared/data/locomo/locomo10.json] [--convs N] [--out FILE]

Each conversation is written as a memcli conversation JSONL (sessions with their date-times, turns as
``speaker: text`` with image captions) and ingested with ``Memcli.ingest`` into its own space. Every
question goes through ``Memcli.recall`` (the default configuration, time-aware, reference time = the
conversation's last session). The metric is the paper's recall accuracy: per question, the fraction
of gold evidence turns among the top-k retrieved turns, averaged per category and overall.
Baselines computed in the same run on the same store, through the same recall code: reciprocal-rank
fusion (the earlier default), BM25 only (RRF, dense weight 0) and dense only (RRF, keyword weight 0).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from memcli.api import Memcli

KS = (5, 10, 25, 50)
CATEGORIES = {4: "single-hop", 1: "multi-hop", 2: "temporal", 3: "open-domain", 5: "adversarial"}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo10.json"
ANCHORS = {
    "DRAGON (paper)": (56.7, 66.2, 76.7, 82.7),
    "plain RRF, neighbour keys (issue)": (55.9, 67.1, 78.6, 84.6),
    "goal": (70.0, 80.0, 88.0, 92.0),
}


def session_time(text: str) -> datetime:
    """LoCoMo's '1:56 pm on 8 May, 2023' → a local datetime."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")


def norm_id(d: str) -> str:
    m = re.fullmatch(r"D(\d+):0*(\d+)", d.strip())
    return f"D{m.group(1)}:{m.group(2)}" if m else d.strip()


def evidence(qa: dict[str, Any], known: set[str]) -> list[str]:
    ids = [norm_id(x) for e in qa.get("evidence", []) for x in re.split(r"[;, ]+", e) if x.strip()]
    return [i for i in dict.fromkeys(ids) if i in known]


def to_jsonl(conv: dict[str, Any], path: Path) -> tuple[set[str], datetime]:
    """Write one conversation as memcli's conversation JSONL; returns its turn ids and last session time."""
    c = conv["conversation"]
    ids: set[str] = set()
    last = datetime.min
    with path.open("w", encoding="utf-8") as f:
        n = 1
        while f"session_{n}_date_time" in c:
            turns = c.get(f"session_{n}")
            if turns:
                when = session_time(c[f"session_{n}_date_time"])
                last = max(last, when)
                messages = []
                for t in turns:
                    text = t["text"]
                    if t.get("blip_caption"):
                        text += f" [shares an image: {t['blip_caption']}]"
                    messages.append({"speaker": t["speaker"], "text": text, "tags": [norm_id(t["dia_id"])]})
                    ids.add(norm_id(t["dia_id"]))
                f.write(json.dumps({"session": f"session_{n}", "time": when.isoformat(), "messages": messages}) + "\n")
            n += 1
    return ids, last


def score(ranked: list[str], gold: list[str]) -> dict[int, float]:
    return {k: sum(1 for g in gold if g in ranked[:k]) / len(gold) for k in KS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--convs", type=int, default=0, help="only the first N conversations (0 = all 10)")
    ap.add_argument("--out", type=Path, help="write the per-config results as JSON here")
    args = ap.parse_args()
    data = json.loads(args.data.read_text())
    if args.convs:
        data = data[: args.convs]
    configs: dict[str, dict[tuple[str, str], object]] = {
        "memcli (default)": {},
        "RRF (earlier default)": {("recall", "fusion"): "rrf"},
        "BM25 only": {("recall", "fusion"): "rrf", ("recall", "dense_weight"): 0.0},
        "dense only": {("recall", "fusion"): "rrf", ("recall", "keyword_weight"): 0.0},
    }
    # per config → category → k → list of per-question scores
    results: dict[str, dict[int, dict[int, list[float]]]] = {c: defaultdict(lambda: defaultdict(list)) for c in configs}
    t0 = time.perf_counter()
    ingest_s = 0.0
    query_s = 0.0
    n_questions = 0
    with tempfile.TemporaryDirectory(prefix="memcli-locomo-") as tmp:
        home = Path(tmp) / "home"
        mems = {name: Memcli(home=home, settings=s) for name, s in configs.items()}
        main_mem = mems["memcli (default)"]
        for i, conv in enumerate(data):
            space = f"conv-{i}"
            path = Path(tmp) / f"{conv.get('sample_id', i)}.jsonl"
            known, last = to_jsonl(conv, path)
            t = time.perf_counter()
            report = main_mem.ingest([path], space=space)
            ingest_s += time.perf_counter() - t
            assert report.count("skipped") == 0, report.files
            now = last.astimezone()
            for qa in conv["qa"]:
                gold = evidence(qa, known)
                if not gold:
                    continue
                n_questions += 1
                for name, mem in mems.items():
                    t = time.perf_counter()
                    hits = mem.recall(qa["question"], k=max(KS), space=space, now=now, touch=False).hits
                    query_s += time.perf_counter() - t
                    ranked = [tag for h in hits for tag in h.memory.tags if tag.startswith("D")]
                    for k, v in score(ranked, gold).items():
                        results[name][qa["category"]][k].append(v)
            print(f"conversation {i + 1}/{len(data)} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        for m in mems.values():
            m.close()

    def avg(xs: list[float]) -> float:
        return 100.0 * sum(xs) / len(xs) if xs else float("nan")

    table: dict[str, dict[str, list[float]]] = {}
    for name, by_cat in results.items():
        rows: dict[str, list[float]] = {}
        for cat, label in CATEGORIES.items():
            rows[f"{label} ({cat})"] = [avg(by_cat[cat][k]) for k in KS]
        rows["overall (all)"] = [avg([v for c in by_cat for v in by_cat[c][k]]) for k in KS]
        rows["overall (no adversarial)"] = [avg([v for c in by_cat if c != 5 for v in by_cat[c][k]]) for k in KS]
        table[name] = rows

    print(
        f"\nLoCoMo retrieval, recall accuracy (%) at k = {', '.join(map(str, KS))}: {n_questions} questions "
        f"with evidence, {len(data)} conversations"
    )
    print(
        f"ingest {ingest_s:.0f} s, recall {1000 * query_s / max(1, n_questions * len(configs)):.1f} ms/question, "
        f"total {time.perf_counter() - t0:.0f} s\n"
    )
    header = "| config | rows | " + " | ".join(f"@{k}" for k in KS) + " |"
    print(header)
    print("|" + "---|" * (2 + len(KS)))
    for name, rows in table.items():
        for row, vals in rows.items():
            print(f"| {name} | {row} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    for name, vals in ANCHORS.items():
        print(f"| {name} | overall | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    if args.out:
        args.out.write_text(json.dumps({"questions": n_questions, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
