"""Kill `memcli consolidate` at random points, over and over, and check nothing is lost or left broken.

    .venv/bin/python benchmarks/consolidate_kill.py [--kills 200] [--facts 400] [--seed N]

A store of a few hundred memories (facts with duplicates among them, notes, episodes over several
days) is built in a temp MEMCLI_HOME. Then, in a loop: `python -m memcli consolidate --no-llm` is
started and SIGKILLed after a random delay; a fresh process opens the store (which completes any
write the killed one left unfinished), checks it is consistent (`memcli doctor`'s checks) and adds a
few more memories, duplicates included, so every run has work. At the end an unkilled run must
complete, every memory ever added must be active or in the trash as a merged duplicate (with the
``merged_from`` link that says into which), and no duplicates may remain.

tests/test_consolidate_kill.py runs the same loop with 15 kills. The child steps (setup, check,
verify) run in their own processes, so the loop's process never opens the store itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()


@dataclass
class Figures:
    kills: int = 0  # runs SIGKILLed while still running
    finished_before_kill: int = 0  # runs that completed before their kill time came
    replayed: int = 0  # checks that found (and completed) a write the killed run left unfinished
    inconsistent: int = 0  # checks where the store did not open or doctor found a problem
    memories: int = 0  # memories added in all (originals)
    merged: int = 0  # of them, in the trash as merged duplicates
    lost: int = 0  # neither active nor a merged duplicate with its link
    duplicates_left: int = 0
    final_rc: int = -1
    seconds: float = 0.0
    problems: tuple[str, ...] = ()


# -- the loop ---------------------------------------------------------------------------------------
def env_for(home: Path, model: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCLI_") or k.startswith("MEMCLI_TEST_")}
    env.update(MEMCLI_HOME=str(home), MEMCLI_EMBEDDING_MODEL=str(model), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def child(env: dict[str, str], *args: str) -> dict[str, Any]:
    p = subprocess.run([sys.executable, str(HERE), *args], env=env, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        return {"error": f"{' '.join(args[:1])} exited {p.returncode}: {p.stderr[-1500:]}"}
    result: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return result


def kill_loop(home: Path, model: Path, *, kills: int, facts: int = 300, seed: int = 7, log: Any = None) -> Figures:
    rng = random.Random(seed)
    env = env_for(home, model)
    fig = Figures()
    problems: list[str] = []
    t0 = time.perf_counter()
    setup = child(env, "setup", str(facts), str(seed))
    if "error" in setup:
        raise RuntimeError(setup["error"])
    # --force: a store seeded with many duplicates is over the nightly change budget on purpose; this
    # loop is about being killed, not about the budget (tests/test_trust_budget.py is).
    consolidate = [sys.executable, "-m", "memcli", "consolidate", "--no-llm", "--force"]
    # How long a whole run takes here: kill points are spread over it (and a bit past it).
    t = time.perf_counter()
    subprocess.run([*consolidate, "--dry-run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    span = max(1.0, (time.perf_counter() - t) * 1.6)
    attempt = 0
    while fig.kills < kills and attempt < kills * 3:
        attempt += 1
        started = time.perf_counter()
        proc = subprocess.Popen(consolidate, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(0.15 * span, span))
            fig.finished_before_kill += 1
            span = max(1.0, (time.perf_counter() - started) * 1.1)  # later runs have less to do: aim at them
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            fig.kills += 1
        check = child(env, "check", str(seed + attempt))
        if "error" in check or not check["consistent"]:
            fig.inconsistent += 1
            problems.append(str(check.get("error") or check.get("findings")))
        fig.replayed += int(check.get("replayed", 0) > 0)
        if log is not None:
            print(f"  run {attempt}: {'killed' if proc.returncode == -signal.SIGKILL else 'finished'}, check {check}", file=log)
    final = subprocess.run(consolidate, env=env, cwd=ROOT, capture_output=True, text=True)
    fig.final_rc = final.returncode
    if final.returncode != 0:
        problems.append(f"final run exited {final.returncode}: {final.stderr[-1500:]}")
    doctor = subprocess.run(
        [sys.executable, "-m", "memcli", "doctor", "--json"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if doctor.returncode != 0:  # the command itself, exit code and all (each check above ran the same service)
        fig.inconsistent += 1
        problems.append(f"memcli doctor exited {doctor.returncode}: {doctor.stdout[-1500:]}")
    verify = child(env, "verify")
    if "error" in verify:
        problems.append(verify["error"])
    else:
        fig.memories, fig.merged = verify["memories"], verify["merged"]
        fig.lost, fig.duplicates_left = len(verify["lost"]), verify["duplicates"]
        fig.inconsistent += int(not verify["consistent"])
        problems += [f"lost: {x}" for x in verify["lost"][:5]]
    fig.seconds = time.perf_counter() - t0
    fig.problems = tuple(problems)
    return fig


# -- child steps (each in its own process) ----------------------------------------------------------
def _open() -> Any:
    from memcli.api import Memcli

    return Memcli()


def _fact_texts(n: int, seed: int) -> list[str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import TextGen

    gen = TextGen(seed)
    return [f"The user noted that {gen.text(gen.rng.randint(8, 16)).rstrip('.').lower()}." for _ in range(n)]


def _variant(text: str, rng: random.Random) -> str:
    """A copy dedupe must catch: same words in another case and punctuation, or one filler word less."""
    if rng.random() < 0.5:
        return text.upper().rstrip(".") + "!"
    return text.replace("The user noted that ", "The user noted ", 1)


def _write(mem: Any, items: list[tuple[str, str, tuple[str, ...], float]]) -> list[str]:
    from memcli.records import Kind
    from memcli.store import NewMemory

    emb = mem._ctx.embedder
    rows = [
        (NewMemory(text, kind=Kind(kind), source="kill-test", tags=tags, event_at=when), emb.embed_documents([text])[0])
        for text, kind, tags, when in items
    ]
    ids: list[str] = mem._ctx.store.add("default", rows, emb.model_id)
    return ids


def _record(ids: list[str]) -> None:
    path = Path(os.environ["MEMCLI_HOME"]) / "originals.json"
    old = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps(old + ids))


def cmd_setup(n_facts: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    texts = _fact_texts(n_facts, seed)
    day0 = time.time() - 20 * 86400
    items: list[tuple[str, str, tuple[str, ...], float]] = [(t, "fact", ("kill",), day0 + i * 600) for i, t in enumerate(texts)]
    items += [(_variant(t, rng), "fact", ("copy",), day0 + 86400) for t in rng.sample(texts, n_facts // 3)]
    notes = _fact_texts(n_facts // 3, seed + 1)
    items += [(t.replace("The user noted that", "Note:"), "note", (rng.choice(["garden", "work", "dog"]),), day0) for t in notes]
    items += [(f"user: {t}", "episode", ("chat",), day0 + rng.randint(0, 14) * 86400) for t in notes[: n_facts // 3]]
    items += [("user: ok", "episode", ("chat",), day0 + i * 86400) for i in range(5)]  # repeats that must stay
    mem = _open()
    ids = _write(mem, items)
    mem.close()
    _record(ids)
    return {"memories": len(ids)}


def _consistent(mem: Any) -> tuple[bool, list[str]]:
    """`memcli doctor`: catalog integrity, keyword index, unfinished writes, vector index per space."""
    report = mem.doctor()
    return report.ok, [f"{f.check}: {f.detail}" for f in report.findings if not f.ok]


def cmd_check(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    mem = _open()
    store = mem._ctx.store  # opening it completes what the killed run left unfinished
    replayed = sum(1 for n in mem.notices if "unfinished" in n)
    ok, bad = _consistent(mem)
    facts = [r[0] for r in store.catalog.db.execute("SELECT text FROM memories WHERE kind = 'fact' AND state = 'active'")]
    fresh = _fact_texts(10, seed + 1000)
    items = [(t, "fact", ("kill",), time.time()) for t in fresh]
    items += [(_variant(t, rng), "fact", ("copy",), time.time()) for t in rng.sample(facts, min(12, len(facts)))]
    items += [(f"Note: {t[20:]}", "note", ("garden",), time.time()) for t in fresh[:8]]
    _record(_write(mem, items))
    mem.close()
    return {"consistent": ok, "findings": bad, "replayed": replayed}


def cmd_verify() -> dict[str, Any]:
    import numpy as np

    from memcli.services.consolidate import norm as _norm
    from memcli.services.consolidate import same_text

    originals = json.loads((Path(os.environ["MEMCLI_HOME"]) / "originals.json").read_text())
    mem = _open()
    cat = mem._ctx.store.catalog
    ok, _ = _consistent(mem)
    rows = cat.by_ids(originals)
    merged_into = {r[1]: r[0] for r in cat.db.execute("SELECT src, dst FROM links WHERE kind = 'merged_from'")}
    lost, merged = [], 0
    for mid in originals:
        m = rows.get(mid)
        if m is not None and m.state == "active":
            continue
        seen, cur = set(), mid
        while cur in merged_into and cur not in seen:  # follow merged_from back to an active survivor
            seen.add(cur)
            cur = merged_into[cur]
        survivor = rows.get(cur) or cat.by_ids([cur]).get(cur)
        if m is not None and m.state == "trashed" and survivor is not None and survivor.state == "active" and cur != mid:
            merged += 1
        else:
            lost.append(mid)
    q = "SELECT id, text, embedding FROM memories WHERE kind = 'fact' AND state = 'active' AND retired_at IS NULL"
    active = cat.db.execute(q).fetchall()
    norms = [_norm(r[1]) for r in active]
    dups = len(norms) - len(set(norms))
    vecs = np.vstack([np.frombuffer(r[2], dtype=np.float32) for r in active]) if active else np.zeros((0, 1))
    sims = vecs @ vecs.T
    cfg = mem._ctx.settings.consolidate
    for i, j in zip(*np.nonzero(np.triu(sims >= cfg.duplicate_similarity, 1))):
        dups += int(_norm(active[i][1]) != _norm(active[j][1]) and same_text(active[i][1], active[j][1], cfg.duplicate_jaccard))
    mem.close()
    return {"memories": len(originals), "merged": merged, "lost": lost, "duplicates": dups, "consistent": ok}


# -- command line -----------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("setup", "check", "verify"):
        what, args = sys.argv[1], sys.argv[2:]
        out = (
            cmd_setup(int(args[0]), int(args[1]))
            if what == "setup"
            else cmd_check(int(args[0]))
            if what == "check"
            else cmd_verify()
        )
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--facts", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import load_note, machine_line, model_file, table

    model = model_file()
    with tempfile.TemporaryDirectory(prefix="memcli-kill-") as d:
        fig = kill_loop(Path(d) / "home", model, kills=a.kills, facts=a.facts, seed=a.seed, log=sys.stderr if a.verbose else None)
    print(f"# consolidate kill loop\n\n{machine_line()} · {load_note()}\n")
    print(table(
        ["kills", "runs finished first", "writes replayed after a kill", "inconsistent checks", "memories added",
         "merged (in trash, linked)", "lost", "duplicates left", "final run exit", "wall s"],
        [[fig.kills, fig.finished_before_kill, fig.replayed, fig.inconsistent, fig.memories, fig.merged, fig.lost,
          fig.duplicates_left, fig.final_rc, f"{fig.seconds:.0f}"]],
    ))  # fmt: skip
    for p in fig.problems[:10]:
        print(f"- {p}")
    sys.exit(1 if fig.lost or fig.inconsistent or fig.duplicates_left or fig.final_rc else 0)


if __name__ == "__main__":
    main()
