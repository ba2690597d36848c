"""Calibrate recall's abstention threshold on LoCoMo.

    .venv/bin/python benchmarks/abstention.py [--convs N]

Positives: each question asked of its own conversation (the answer is there). Negatives: the same
question asked of another person's conversation (nothing there is about it). For each threshold on
the best dense similarity, the table shows how often recall would abstain on each; the chosen
default is ``[recall] min_similarity``. The last line is memcli's full rule, which also keeps
answers where one memory contains every content word of the question.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from locomo import DEFAULT_DATA, evidence, to_jsonl

from memcli.api import Memcli

THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--convs", type=int, default=4)
    args = ap.parse_args()
    data = json.loads(args.data.read_text())[: max(2, args.convs)]
    pos: list[tuple[float, bool]] = []
    neg: list[tuple[float, bool]] = []
    with tempfile.TemporaryDirectory(prefix="memcli-abstain-") as tmp:
        mem = Memcli(home=Path(tmp) / "home")
        known = []
        for i, conv in enumerate(data):
            path = Path(tmp) / f"{i}.jsonl"
            ids, _ = to_jsonl(conv, path)
            known.append(ids)
            mem.ingest([path], space=f"conv-{i}")
        for i, conv in enumerate(data):
            other = f"conv-{(i + 1) % len(data)}"
            for qa in conv["qa"]:
                if qa["category"] == 5 or not evidence(qa, known[i]):
                    continue  # adversarial questions are about things that did not happen
                for space, out in ((f"conv-{i}", pos), (other, neg)):
                    r = mem.recall(qa["question"], k=10, space=space, touch=False, time_aware=False)
                    out.append((r.confidence, r.abstained))
        mem.close()
    print(f"{len(pos)} questions, each asked of its own conversation (answer present) and of another (absent)\n")
    print("| min_similarity | abstains when absent | abstains when present |")
    print("|---|---|---|")
    for t in THRESHOLDS:
        print(
            f"| {t:.2f} | {100 * sum(c < t for c, _ in neg) / len(neg):.1f}% | {100 * sum(c < t for c, _ in pos) / len(pos):.1f}% |"
        )
    print(
        f"\nmemcli's rule at the configured threshold (low similarity and no memory holding every content word):"
        f" abstains {100 * sum(a for _, a in neg) / len(neg):.1f}% when absent, {100 * sum(a for _, a in pos) / len(pos):.1f}% when present"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
