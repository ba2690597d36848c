"""Two idle years, then cron: what `memcli consolidate` and `memcli prune --yes` take out of a store
nobody used, and what the change budget does.

    .venv/bin/python benchmarks/idle_years.py [--notes 200] [--facts 100] [--days 20] [--turns 30] [--years 2]

A store is built in a temp MEMCLI_HOME whose memories were all recorded YEARS ago (over DAYS days) and
never recalled since: notes (importance 0.2 to 0.8: some jotted down, some kept with care), facts
learned in chat, TURNS conversation turns a day and one daily summary a day. Then, each in its own
process as cron runs them:

1. `memcli consolidate` (no chat model configured: its LLM steps are skipped);
2. `memcli prune --yes`;
3. `memcli prune --yes --force` (what the user runs after reading what cron mailed them).

It prints, per kind, how many there were, how many the forgetting curve alone says have faded (every
kind named: what an unguarded prune would take), and how many are active after each command, with
each command's exit code and what it said.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

DAY = 86400.0
KINDS = ("note", "fact", "episode", "summary")


def build(home: Path, model: Path, args: argparse.Namespace) -> None:
    from memcli.records import Kind
    from memcli.store import NewMemory

    mem = c.open_store(home, model)
    gen = c.TextGen(c.SEED)
    rng = random.Random(c.SEED)
    start = time.time() - args.years * 365 * DAY - args.days * DAY  # the first day of use
    items: list[NewMemory] = []

    def at(day: float) -> float:
        return start + day * DAY

    for i in range(args.notes):
        items.append(NewMemory(f"Note {i}: {gen.text(rng.randint(8, 30))}", kind=Kind.NOTE, recorded_at=at(rng.uniform(0, args.days)),
                               importance=rng.choice((0.2, 0.3, 0.5, 0.5, 0.8))))  # fmt: skip
    for i in range(args.facts):
        t = at(rng.uniform(0, args.days))
        items.append(NewMemory(f"The user's fact number {i}: {gen.text(rng.randint(5, 12))}", kind=Kind.FACT, source="chat:s0",
                               recorded_at=t, event_at=t, valid_from=t, tags=("fact",)))  # fmt: skip
    for d in range(args.days):
        for j in range(args.turns):
            who = "user" if j % 2 == 0 else "assistant"
            items.append(NewMemory(f"{who}: {gen.text(rng.randint(4, 20))}", kind=Kind.EPISODE, source=f"chat:day{d}",
                                   position=j, recorded_at=at(d + j / 100), tags=("chat",)))  # fmt: skip
        day_tag = time.strftime("%Y-%m-%d", time.localtime(at(d)))
        items.append(NewMemory(f"Daily summary {d}: {gen.text(25)}", kind=Kind.SUMMARY, source="consolidate:daily",
                               recorded_at=at(d + 1), event_at=at(d), importance=0.6, tags=("daily", day_tag)))  # fmt: skip
    emb = mem._ctx.embedder
    for b in range(0, len(items), 200):
        batch = items[b : b + 200]
        vecs = emb.embed_documents([x.text for x in batch])
        mem._ctx.store.add("default", list(zip(batch, vecs, strict=True)), emb.model_id)
    mem.close()


def counts(env: dict[str, str]) -> dict[str, int]:
    kinds = json.loads(memcli(env, "stats", "--json")[1])["data"]["kinds"]
    return {k: int(kinds.get(k, 0)) for k in KINDS}


def faded_by_curve(env: dict[str, str]) -> dict[str, int]:
    every = [a for k in ("note", "fact", "episode", "summary", "profile") for a in ("--kind", k)]
    plan = json.loads(memcli(env, "prune", *every, "--json")[1])["data"]
    out = dict.fromkeys(KINDS, 0)
    for cand in plan["candidates"]:
        out[cand["kind"]] = out.get(cand["kind"], 0) + 1
    return out


def memcli(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "memcli", *argv], env=env, capture_output=True, text=True, cwd=c.ROOT)
    return p.returncode, p.stdout, p.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=200)
    ap.add_argument("--facts", type=int, default=100)
    ap.add_argument("--days", type=int, default=20, help="days of use, two years ago")
    ap.add_argument("--turns", type=int, default=30, help="conversation turns a day")
    ap.add_argument("--years", type=float, default=2.0, help="years nobody used it")
    args = ap.parse_args()
    model = c.model_file()
    with tempfile.TemporaryDirectory(prefix="memcli-idle-") as d:
        home = Path(d) / "home"
        t = time.perf_counter()
        build(home, model, args)
        built_s = time.perf_counter() - t
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCLI_")}
        env.update(MEMCLI_HOME=str(home), MEMCLI_EMBEDDING_MODEL=str(model))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(c.ROOT), env.get("PYTHONPATH", "")) if p)
        columns = {"before": counts(env), "faded by the curve (every kind named)": faded_by_curve(env)}
        budget = json.loads(memcli(env, "prune", "--json")[1])["data"]["budget"]
        said: list[tuple[str, int, str]] = []
        for label, argv in (
            ("after `consolidate`", ["consolidate"]),
            ("after `prune --yes`", ["prune", "--yes"]),
            ("after `prune --yes --force`", ["prune", "--yes", "--force"]),
        ):
            rc, _, err = memcli(env, *argv)
            message = " ".join(err.split()).split(" hint: ")[0]  # the hint names --force; the README says the rest
            said.append((" ".join(argv), rc, re.sub(r" \(details: [^)]*\)", "", message)))
            columns[label] = counts(env)

    print(f"# two idle years, then cron\n\n{c.machine_line()} · {c.load_note()}\n")
    print(f"Store: {args.notes} notes, {args.facts} facts, {args.days} days × {args.turns} turns and a daily summary, "
          f"recorded {args.years:g} years ago and never recalled (built in {built_s:.0f} s).\n")  # fmt: skip
    rows = [[k, *(str(col[k]) for col in columns.values())] for k in KINDS]
    print(c.table(["kind", *columns], rows))
    print()
    print(c.table(["command", "exit", "what it said (stderr)"], [[f"`memcli {a}`", str(rc), e or "-"] for a, rc, e in said]))
    print(
        f"\nChange budget of one unattended run: {budget['limit']} memories = max(max_change_floor {budget['floor']}, "
        f"{budget['fraction']:g} × {budget['current']} current memories)."
    )


if __name__ == "__main__":
    main()
