"""How memcli's fusion settings were chosen: LoCoMo recall for a grid of settings on one store.

    .venv/bin/python benchmarks/locomo_fusion.py [--convs 2] [--neighbours 0 1 2]

For each ``[ingest] neighbour_keys`` value, the first N conversations are ingested once and every
question is asked under each recall setting below (same store, same questions), printing recall
accuracy at k = 5, 10, 25, 50 over all questions with evidence.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from locomo import DEFAULT_DATA, KS, evidence, score, to_jsonl

from memcli.api import Memcli

GRID: dict[str, dict[tuple[str, str], object]] = {
    "RRF rrf_k 60, equal weights": {("recall", "rrf_k"): 60, ("recall", "keyword_weight"): 1.0},
    "BM25 only": {("recall", "dense_weight"): 0.0},
    "dense only": {("recall", "keyword_weight"): 0.0},
    "rrf_k 20, keyword 2": {("recall", "rrf_k"): 20, ("recall", "keyword_weight"): 2.0},
    "rrf_k 10, keyword 1.5": {("recall", "rrf_k"): 10, ("recall", "keyword_weight"): 1.5},
    "rrf_k 10, keyword 2 (default)": {},
    "rrf_k 5, keyword 1": {("recall", "rrf_k"): 5, ("recall", "keyword_weight"): 1.0},
    "rrf_k 5, keyword 2": {("recall", "rrf_k"): 5, ("recall", "keyword_weight"): 2.0},
}


def run(data: list[dict], neighbours: int) -> dict[str, list[float]]:  # type: ignore[type-arg]
    res: dict[str, dict[int, list[float]]] = {n: defaultdict(list) for n in GRID}
    with tempfile.TemporaryDirectory(prefix="memcli-fusion-") as tmp:
        base = {("ingest", "neighbour_keys"): neighbours}
        mems = {n: Memcli(home=Path(tmp) / "h", settings={**base, **s}) for n, s in GRID.items()}
        first = next(iter(mems.values()))
        for i, conv in enumerate(data):
            path = Path(tmp) / f"{i}.jsonl"
            known, last = to_jsonl(conv, path)
            first.ingest([path], space=f"c{i}")
            for qa in conv["qa"]:
                gold = evidence(qa, known)
                if not gold:
                    continue
                for name, mem in mems.items():
                    hits = mem.recall(qa["question"], k=max(KS), space=f"c{i}", now=last.astimezone(), touch=False).hits
                    ranked = [t for h in hits for t in h.memory.tags if t.startswith("D")]
                    for k, v in score(ranked, gold).items():
                        res[name][k].append(v)
        for m in mems.values():
            m.close()
    return {n: [100 * sum(r[k]) / len(r[k]) for k in KS] for n, r in res.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--convs", type=int, default=2)
    ap.add_argument("--neighbours", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    data = json.loads(args.data.read_text())[: args.convs]
    print(f"| neighbour_keys | recall setting | {' | '.join(f'@{k}' for k in KS)} |")
    print("|" + "---|" * (2 + len(KS)))
    for nk in args.neighbours:
        for name, vals in run(data, nk).items():
            print(f"| {nk} | {name} | " + " | ".join(f"{v:.1f}" for v in vals) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
