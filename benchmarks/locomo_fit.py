"""Fit the learned fusion's weights (memcli/services/fusion.py) on LoCoMo, and check them by two-fold
cross-validation across conversations.

    .venv/bin/python benchmarks/locomo_fit.py [--store DIR] [--data ...]

Every conversation is ingested through ``Memcli.ingest`` into its own space (or an existing store from
an earlier ``--store DIR`` run is reused: the ingest takes ~10 min on 2 cores). For every question, recall's
own candidate pool and features (``memcli.services.recall.fusion_features``) are collected, with
label 1 for the gold evidence turns. A logistic regression (balanced classes, L2, Adam on
standardised features; numpy only) is fitted on the even conversations and tested on the odd ones,
then the other way round; the table compares that held-out ranking with RRF on the same pools. Last,
the weights fitted on all ten are printed in the form fusion.py holds them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from locomo import DEFAULT_DATA, KS, evidence, score, to_jsonl

from memcli.api import Memcli
from memcli.services import fusion
from memcli.services.recall import fusion_features

Pool = tuple[np.ndarray, list[str], list[str], int]  # features, dia ids, gold, category


def collect(mem: Memcli, data: list[dict[str, Any]], tmp: Path) -> list[list[Pool]]:
    out = []
    for i, conv in enumerate(data):
        space = f"conv-{i}"
        path = tmp / f"{i}.jsonl"
        known, last = to_jsonl(conv, path)
        if not mem.stats(space=space).spaces.get(space):
            mem.ingest([path], space=space)
        pools = []
        for qa in conv["qa"]:
            gold = evidence(qa, known)
            if gold:
                ms, x = fusion_features(mem._ctx, qa["question"], space=space, now=last.astimezone())
                dia = [next((t for t in m.tags if t.startswith("D")), "") for m in ms]
                pools.append((x, dia, gold, qa["category"]))
        out.append(pools)
        print(f"conversation {i + 1}/{len(data)}: {len(pools)} questions", file=sys.stderr)
    return out


def fit(pools: list[Pool], l2: float = 1e-3, iters: int = 400, lr: float = 0.1) -> tuple[np.ndarray, float]:
    x = np.concatenate([p[0] for p in pools])
    y = np.concatenate([np.isin(p[1], p[2]).astype(float) for p in pools])
    mu, sd = x.mean(0), x.std(0) + 1e-9
    xs = (x - mu) / sd
    pos = max(y.mean(), 1e-9)
    sw = np.where(y > 0, ((1 - pos) / pos) ** 0.5, 1.0)  # part-balanced: evidence is ~1% of a pool
    w, b = np.zeros(x.shape[1]), 0.0
    m1, v1, m2, v2 = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    for t in range(1, iters + 1):  # Adam
        p = 1 / (1 + np.exp(-(xs @ w + b)))
        g = (p - y) * sw
        gw, gb = xs.T @ g / len(y) + l2 * w, float(g.mean())
        m1, v1 = 0.9 * m1 + 0.1 * gw, 0.999 * v1 + 0.001 * gw**2
        m2, v2 = 0.9 * m2 + 0.1 * gb, 0.999 * v2 + 0.001 * gb**2
        w -= lr * (m1 / (1 - 0.9**t)) / (np.sqrt(v1 / (1 - 0.999**t)) + 1e-8)
        b -= lr * (m2 / (1 - 0.9**t)) / (np.sqrt(v2 / (1 - 0.999**t)) + 1e-8)
    return w / sd, float(b - (mu / sd) @ w)


def rrf(x: np.ndarray) -> np.ndarray:
    col = {f: i for i, f in enumerate(fusion.FEATURES)}
    # memcli's RRF default (rrf_k 10 = RANK_OFFSET, keyword weight 2), ties to the keyword rank
    return x[:, col["dense_rrf"]] + 2 * x[:, col["keyword_rrf"]] + 1e-6 * x[:, col["keyword_rrf"]]


def evaluate(pools: list[Pool], rank: Any) -> dict[str, list[float]]:
    res: dict[Any, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for x, dia, gold, cat in pools:
        order = np.argsort(-rank(x), kind="stable")
        for k, v in score([dia[j] for j in order], gold).items():
            res[cat][k].append(v)
            res["all"][k].append(v)
    return {str(c): [100 * float(np.mean(r[k])) for k in KS] for c, r in res.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--store", type=Path, help="keep (or reuse) the ingested store here")
    ap.add_argument("--neighbours", type=int, help="[ingest] neighbour_keys for a new store (default: memcli's)")
    args = ap.parse_args()
    data = json.loads(args.data.read_text())
    with tempfile.TemporaryDirectory(prefix="memcli-fit-") as tmp:
        settings = {} if args.neighbours is None else {("ingest", "neighbour_keys"): args.neighbours}
        mem = Memcli(home=args.store or Path(tmp) / "home", settings=settings)
        convs = collect(mem, data, Path(tmp))
        mem.close()
    halves = ([0, 2, 4, 6, 8], [1, 3, 5, 7, 9])
    held: list[Pool] = []
    scored: list[tuple[Pool, np.ndarray, float]] = []
    for train, test in (halves, halves[::-1]):
        w, b = fit([p for i in train for p in convs[i]])
        for i in test:
            for p in convs[i]:
                held.append(p)
                scored.append((p, w, b))
    weights = {id(p[0]): (w, b) for p, w, b in scored}
    learned = evaluate(held, lambda x: x @ weights[id(x)][0] + weights[id(x)][1])
    base = evaluate(held, rrf)
    names = {"all": "overall", "4": "single-hop", "1": "multi-hop", "2": "temporal", "3": "open-domain", "5": "adversarial"}
    print(f"\nLoCoMo, {len(held)} questions, recall accuracy (%) at k = {', '.join(map(str, KS))} over recall's candidate pools")
    print("| ranking | rows | " + " | ".join(f"@{k}" for k in KS) + " |")
    print("|" + "---|" * (2 + len(KS)))
    for label, table in (("learned, held-out half (2-fold CV)", learned), ("RRF (rrf_k 10, keyword 2)", base)):
        for key, name in names.items():
            print(f"| {label} | {name} | " + " | ".join(f"{v:.1f}" for v in table[key]) + " |")
    w, b = fit([p for c in convs for p in c])
    print("\nWEIGHTS = {")
    for f, v in zip(fusion.FEATURES, w, strict=True):
        print(f'    "{f}": {v:.4f},')
    print(f"}}\nBIAS = {b:.4f}")
    # SCALE: the median logit gap between the first two candidates of RRF's order → RRF's own median gap
    gaps = [np.sort(x @ w)[-1] - np.sort(x @ w)[-2] for c in convs for x, *_ in c if len(x) > 1]
    rgaps = [np.sort(rrf(x))[-1] - np.sort(rrf(x))[-2] for c in convs for x, *_ in c if len(x) > 1]
    print(f"SCALE = {float(np.median(rgaps)) / float(np.median(gaps)):.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
