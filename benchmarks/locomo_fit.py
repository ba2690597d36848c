"""Fit the learned fusion's weights (memcli/services/fusion.py) on LoCoMo, and check them by
cross-validation across conversations.

    .venv/bin/python benchmarks/locomo_fit.py [--store DIR] [--folds 5] [--data ...]

Every conversation is ingested through ``Memcli.ingest`` into its own space (or an existing store from
an earlier ``--store DIR`` run is reused: the ingest takes ~10 min on 2 cores). For every question, recall's
own candidate pool and features (``memcli.services.recall.fusion_features``) are collected, with
label 1 for the gold evidence turns. A logistic regression (balanced classes, L2, Adam on
standardised features; numpy only) is fitted with the conversations split into ``--folds`` folds
(conversation i in fold i mod N; 2 = even/odd): each fold is ranked by weights fitted on the others.
The table compares that held-out ranking, per category, with the same held-out fit on the issue-3
features alone, with the weights fusion.py holds now, and with RRF, all on the same pools; then the
overall numbers per fold. Last, the weights fitted on all ten are printed in the form fusion.py
holds them.
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


# The features of the issue-3 fusion: the baseline the held-out table compares the full set with.
ISSUE3 = (
    "dense_rrf", "keyword_rrf", "similarity_gap", "bm25", "bm25_text", "bm25_keys", "coverage", "source_best",
    "near1_bm25", "near2_bm25", "near1_coverage", "near2_coverage", "near1_similarity",
)  # fmt: skip
NAMES = {"all": "overall", "4": "single-hop", "1": "multi-hop", "2": "temporal", "3": "open-domain", "5": "adversarial"}


def evaluate(pools: list[Pool], scores: list[np.ndarray]) -> dict[str, list[float]]:
    res: dict[Any, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (_, dia, gold, cat), s in zip(pools, scores, strict=True):
        order = np.argsort(-s, kind="stable")
        for k, v in score([dia[j] for j in order], gold).items():
            res[cat][k].append(v)
            res["all"][k].append(v)
    return {str(c): [100 * float(np.mean(r[k])) for k in KS] for c, r in res.items()}


def held_out(convs: list[list[Pool]], folds: int, cols: list[int]) -> list[list[np.ndarray]]:
    """Per conversation, per question: the scores of weights fitted on the other folds' conversations."""
    out: list[list[np.ndarray]] = [[] for _ in convs]
    for f in range(folds):
        test = [i for i in range(len(convs)) if i % folds == f]
        w, b = fit([(x[:, cols], *rest) for i, c in enumerate(convs) if i % folds != f for x, *rest in c])
        for i in test:
            out[i] = [x[:, cols] @ w + b for x, *_ in convs[i]]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--store", type=Path, help="keep (or reuse) the ingested store here")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds over the conversations (2 = even/odd)")
    ap.add_argument("--neighbours", type=int, help="[ingest] neighbour_keys for a new store (default: memcli's)")
    args = ap.parse_args()
    data = json.loads(args.data.read_text())
    with tempfile.TemporaryDirectory(prefix="memcli-fit-") as tmp:
        settings = {} if args.neighbours is None else {("ingest", "neighbour_keys"): args.neighbours}
        mem = Memcli(home=args.store or Path(tmp) / "home", settings=settings)
        convs = collect(mem, data, Path(tmp))
        mem.close()
    folds = max(2, min(args.folds, len(convs)))
    every = list(range(len(fusion.FEATURES)))
    issue3 = [fusion.FEATURES.index(f) for f in ISSUE3]
    shipped = np.asarray([fusion.WEIGHTS[f] for f in fusion.FEATURES])
    pools = [p for c in convs for p in c]
    learned = held_out(convs, folds, every)
    base = held_out(convs, folds, issue3)
    rows = {
        f"learned, all {len(every)} features, held-out ({folds}-fold CV)": [s for c in learned for s in c],
        f"learned, issue-3 features ({len(issue3)}), held-out ({folds}-fold CV)": [s for c in base for s in c],
        "fusion.py's weights as they are (in-sample once fitted on all ten)": [x @ shipped for x, *_ in pools],
        "RRF (rrf_k 10, keyword 2)": [rrf(x) for x, *_ in pools],
    }
    print(f"\nLoCoMo, {len(pools)} questions, recall accuracy (%) at k = {', '.join(map(str, KS))} over recall's candidate pools")
    print("| ranking | rows | " + " | ".join(f"@{k}" for k in KS) + " |")
    print("|" + "---|" * (2 + len(KS)))
    for label, scores in rows.items():
        table = evaluate(pools, scores)
        for key, name in NAMES.items():
            print(f"| {label} | {name} | " + " | ".join(f"{v:.1f}" for v in table[key]) + " |")
    print("\nOverall per held-out fold (all features vs the issue-3 features):")
    print("| fold | conversations | questions | " + " | ".join(f"@{k}" for k in KS) + " |")
    print("|" + "---|" * (3 + len(KS)))
    for f in range(folds):
        idx = [i for i in range(len(convs)) if i % folds == f]
        fp = [p for i in idx for p in convs[i]]
        new = evaluate(fp, [s for i in idx for s in learned[i]])["all"]
        old = evaluate(fp, [s for i in idx for s in base[i]])["all"]
        cells = " | ".join(f"{a:.1f} ({a - b:+.1f})" for a, b in zip(new, old, strict=True))
        print(f"| {f + 1} | {', '.join(str(i + 1) for i in idx)} | {len(fp)} | {cells} |")
    w, b = fit(pools)
    print("\nWEIGHTS = {")
    for f, v in zip(fusion.FEATURES, w, strict=True):
        print(f'    "{f}": {v:.4f},')
    print(f"}}\nBIAS = {b:.4f}")
    # SCALE: the median logit gap between the first two candidates of RRF's order → RRF's own median gap
    gaps = [np.sort(x @ w)[-1] - np.sort(x @ w)[-2] for x, *_ in pools if len(x) > 1]
    rgaps = [np.sort(rrf(x))[-1] - np.sort(rrf(x))[-2] for x, *_ in pools if len(x) > 1]
    print(f"SCALE = {float(np.median(rgaps)) / float(np.median(gaps)):.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
