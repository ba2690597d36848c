"""Real ``python -m memcli`` processes, SIGKILLed at random points, and what must hold afterwards.

Shared by tests/test_crash.py (a small CI subset), tests/test_concurrency.py, tests/test_exhaustion.py,
tests/test_privacy.py and benchmarks/crash_loop.py (hundreds of kills). Nothing is mocked: each job is
the CLI a user runs, on a real store (SQLite catalog + embedded Chroma) with the real MiniLM.

A kill lands either after a random delay (anywhere: imports, model load, embedding, a write) or
"at a write": right after the process first changes the catalog's write-ahead log, plus a short random
delay, which puts it between the catalog commit and the vector-index confirmation far more often.

After every kill:
- the store opens and ``memcli doctor --json`` is ok (that first open completes unfinished writes;
  the "completed N memory write(s)" notice it prints is counted as a kill that landed mid-write);
- what the store holds is all-or-nothing per unit of work (one ``add``, one ingested file, one
  ``forget`` of several ids), read straight from the catalog;
- a rerun of the same job succeeds, and then the store holds exactly the expected memories: none
  lost, none twice (and, for ``forget --purge``, no byte of the purged text anywhere under MEMCLI_HOME).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RECOVERED_NOTICE = "left unfinished"  # "completed N memory write(s) that an earlier run left unfinished"
WAIT_NOTICE = "waiting for another memcli process"
TIMEOUT = 300.0  # "no hang": a generous bound on any one process


# -- running memcli ---------------------------------------------------------------------------------
def memcli_env(home: Path, model: Path, **extra: str) -> dict[str, str]:
    """The environment of a memcli process: its own home and model, one llama.cpp thread (the machines
    have 2 cores and are shared), no colour. The test network guard's variables are kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCLI_") or k.startswith("MEMCLI_TEST_")}
    env.update(
        MEMCLI_HOME=str(home),
        MEMCLI_EMBEDDING_MODEL=str(model),
        MEMCLI_EMBEDDING_N_THREADS="1",
        NO_COLOR="1",
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class Proc:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def memcli(
    env: dict[str, str],
    *args: str,
    stdin: str | bytes | None = None,
    timeout: float = TIMEOUT,
    preexec: Any = None,
) -> Proc:
    """Run ``python -m memcli ARGS`` to completion (stdin is empty unless given)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    r = subprocess.run(
        [sys.executable, "-m", "memcli", *args],
        input=data if data is not None else b"",
        capture_output=True,
        env=env,
        cwd=Path(env["MEMCLI_HOME"]).parent,
        timeout=timeout,
        preexec_fn=preexec,
    )
    return Proc(r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace"))


def doctor(env: dict[str, str]) -> tuple[Proc, dict[str, Any] | None]:
    p = memcli(env, "doctor", "--json")
    try:
        envelope = p.json()
    except ValueError:
        return p, None
    data = envelope.get("data")
    return p, data if isinstance(data, dict) else None


def not_ok_findings(report: dict[str, Any] | None) -> list[str]:
    if report is None:
        return ["<no doctor report>"]
    return [f"{f['check']}: {f['detail']}" for f in report["findings"] if not (f["ok"] or f["repaired"])]


@dataclass(frozen=True)
class KillOutcome:
    killed: bool  # False: the job finished before the kill came
    code: int
    at: float  # seconds after start


def wal_state(home: Path) -> tuple[int, int] | None:
    try:
        st = (home / "data" / "memcli.sqlite3-wal").stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def run_and_kill(env: dict[str, str], args: Sequence[str], *, delay: float | None, after_write: float | None) -> KillOutcome:
    """Start ``memcli ARGS`` and SIGKILL it ``delay`` seconds after start, or ``after_write`` seconds
    after its first change to the catalog's write-ahead log (whichever is given)."""
    home = Path(env["MEMCLI_HOME"])
    before = wal_state(home)
    start = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-m", "memcli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=home.parent,
    )
    try:
        deadline = start + TIMEOUT
        if delay is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=delay)
        else:
            assert after_write is not None
            while p.poll() is None and time.monotonic() < deadline:
                now = wal_state(home)
                if now is not None and now[0] > 0 and now != before:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(timeout=after_write)
                    break
                time.sleep(0.001)
        at = time.monotonic() - start
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        code = p.wait(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return KillOutcome(code == -signal.SIGKILL, code, at)


# -- reading the store (read-only, between processes) ----------------------------------------------
@dataclass(frozen=True)
class Row:
    id: str
    space: str
    text: str
    source: str
    position: int | None
    tags: tuple[str, ...]
    state: str
    vec_state: str
    embed_model: str


def read_catalog(home: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the catalog, opened read-only (no store open, nothing completed or changed)."""
    db_path = home / "data" / "memcli.sqlite3"
    if not db_path.exists():
        return []
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return list(con.execute(sql))
    finally:
        con.close()


def rows(home: Path) -> list[Row]:
    q = "SELECT id, space, text, source, position, tags, state, vec_state, embed_model FROM memories ORDER BY rowid"
    return [Row(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6], r[7], r[8]) for r in read_catalog(home, q)]


def all_bytes(root: Path) -> Iterator[tuple[Path, bytes]]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            yield p, p.read_bytes()


def traces(root: Path, needles: Sequence[str]) -> list[str]:
    """'file: needle' for every needle found (case-insensitively, UTF-8) in any file under ``root``."""
    found = []
    for p, data in all_bytes(root):
        low = data.lower()
        found += [f"{p.relative_to(root)}: {n}" for n in needles if n.lower().encode() in low]
    return found


# -- jobs ---------------------------------------------------------------------------------------------
WORDS = (
    "garden",
    "river",
    "lantern",
    "copper",
    "violin",
    "harbour",
    "meadow",
    "pepper",
    "ticket",
    "window",
    "orchard",
    "basil",
    "cobalt",
    "ember",
    "falcon",
    "glacier",
    "hammock",
    "island",
    "jasmine",
    "kettle",
    "ladder",
    "marble",
    "nectar",
    "oyster",
    "parsley",
    "quartz",
    "saddle",
    "thistle",
    "umbrella",
    "velvet",
    "walnut",
    "yarrow",
    "zephyr",
    "almond",
    "bramble",
    "candle",
    "dune",
    "elder",
    "fennel",
    "granite",
    "heron",
    "indigo",
    "juniper",
    "kelp",
    "lemon",
    "maple",
    "nutmeg",
    "olive",
    "pebble",
    "quince",
    "rosemary",
    "sorrel",
    "tulip",
    "urchin",
    "willow",
)


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@dataclass
class Verdict:
    """What one check found: memories lost, memories present more than once, traces left, and why."""

    lost: int = 0
    duplicates: int = 0
    leaks: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Verdict) -> None:
        self.lost += other.lost
        self.duplicates += other.duplicates
        self.leaks += other.leaks
        self.problems += other.problems


def compare(expected: dict[str, list[tuple[int | None, str]]], actual: dict[str, list[tuple[int | None, str]]]) -> Verdict:
    """Per unit (a tag, a source): lost = expected items missing, duplicates = items beyond one each."""
    v = Verdict()
    for key in sorted(set(expected) | set(actual)):
        want, have = sorted(expected.get(key, []), key=repr), sorted(actual.get(key, []), key=repr)
        for item in set(want):
            lost = want.count(item) - have.count(item)
            if lost > 0:
                v.lost += lost
                v.problems.append(f"{key}: lost {item!r}")
        for item in set(have):
            extra = have.count(item) - want.count(item)
            if extra > 0:
                v.duplicates += extra
                v.problems.append(f"{key}: unexpected {'duplicate ' if item in want else ''}{item!r}")
    return v


class Job:
    """One kind of work that gets killed. ``prepare`` sets up iteration ``i`` and returns the home to use."""

    name = "job"
    full_runtime = 1.0
    home: Path  # the store of the iteration being run

    def prepare(self, i: int, rng: random.Random) -> Path:
        raise NotImplementedError

    def args(self) -> list[str]:
        raise NotImplementedError

    def env(self, home: Path) -> dict[str, str]:
        raise NotImplementedError

    def after_kill(self, home: Path) -> Verdict:
        """All-or-nothing: the state after a kill (once doctor's open completed pending writes)."""
        raise NotImplementedError

    def complete(self, home: Path) -> Verdict:
        """After the rerun: exactly what the job should have produced."""
        raise NotImplementedError

    def allowed_findings(self) -> tuple[str, ...]:
        """Doctor checks that may be not-ok right after a kill (none, except for reindex)."""
        return ()

    def rerun_code_ok(self, code: int) -> bool:
        return code == 0

    def left_unfinished(self, doctor_err: str, findings: list[str]) -> bool:
        """Did the kill leave work half-done (that the next open or the rerun had to complete)?"""
        return RECOVERED_NOTICE in doctor_err

    def finish(self, home: Path) -> None:
        """Clean up an iteration's copy."""

    def measure(self, rng: random.Random) -> float:
        """Run the job once (as iteration 0) without killing it, to learn how long it takes: kill delays
        are drawn up to that. Killed iterations are numbered from 1. Returns seconds."""
        home = self.prepare(0, rng)
        t = time.monotonic()
        p = memcli(self.env(home), *self.args())
        took = time.monotonic() - t
        if p.code != 0:
            raise AssertionError(f"{self.name}: the uninterrupted job failed (exit {p.code}): {p.err[-800:]}")
        self.finish(home)
        self.full_runtime = took
        return took

    def runtime(self, i: int) -> float:
        """How long iteration ``i``'s job takes when not killed (about)."""
        return self.full_runtime


class AddJob(Job):
    """``memcli add TEXT --tag tN``: one text per iteration into one growing store; every fourth text is
    long enough to become several chunks (written in one atomic batch)."""

    name = "add"

    def __init__(self, root: Path, model: Path, seed: int = 1) -> None:
        self.home = root / "add-home"
        self.model = model
        rng = random.Random(seed)
        self.texts: list[str] = []
        for i in range(10_000):
            if i % 4 == 3:
                paras = [f"Part {j} of long memory {i}: " + sentence(rng, 60) + "." for j in range(5)]
                self.texts.append("\n\n".join(paras))
            else:
                self.texts.append(f"Memory {i}: " + sentence(rng, 12) + ".")
        self.current = -1

    def prepare(self, i: int, rng: random.Random) -> Path:
        self.current = i
        return self.home

    def args(self) -> list[str]:
        return ["add", self.texts[self.current], "--tag", f"t{self.current}", "--json"]

    def env(self, home: Path) -> dict[str, str]:
        return memcli_env(home, self.model)

    def _by_tag(self, home: Path) -> dict[str, list[tuple[int | None, str]]]:
        out: dict[str, list[tuple[int | None, str]]] = {}
        for r in rows(home):
            if r.state == "active":
                for t in r.tags:
                    out.setdefault(t, []).append((r.position, r.text))
        return out

    def _whole(self, i: int, items: list[tuple[int | None, str]]) -> bool:
        items = sorted(items, key=lambda x: -1 if x[0] is None else x[0])
        positions = [p for p, _ in items]
        if positions not in ([None], list(range(len(items)))):
            return False
        return " ".join(t for _, t in items).split() == self.texts[i].split()

    def after_kill(self, home: Path) -> Verdict:
        v = Verdict()
        have = self._by_tag(home)
        for i in range(self.current + 1):
            items = have.get(f"t{i}", [])
            if i == self.current and not items:
                continue  # the killed add had not committed: nothing of it, fine
            if not self._whole(i, items):
                v.lost += 1
                v.problems.append(f"add {i}: {len(items)} chunk rows, not the whole text exactly once")
        return v

    def complete(self, home: Path) -> Verdict:
        v = Verdict()
        have = self._by_tag(home)
        for i in range(self.current + 1):
            items = have.get(f"t{i}", [])
            if not items:
                v.lost += 1
                v.problems.append(f"add {i}: missing")
            elif not self._whole(i, items):
                n = len({t for _, t in items})
                v.duplicates += len(items) - n
                v.lost += 0 if len(items) > n else 1
                v.problems.append(f"add {i}: {len(items)} rows do not make up the text exactly once")
        extra = set(have) - {f"t{i}" for i in range(self.current + 1)}
        if extra:
            v.problems.append(f"unexpected tags {sorted(extra)[:5]}")
        return v


class IngestJob(Job):
    """``memcli ingest TREE --prune-missing``: a tree of Markdown, text and JSONL files; the first
    iteration ingests it whole, later ones after changing, deleting and adding some files."""

    name = "ingest"

    def __init__(self, root: Path, model: Path, files: int = 300, churn: float = 0.15) -> None:
        self.home = root / "ingest-home"
        self.tree = root / "ingest-tree"
        self.model = model
        self.n_files = files
        self.churn = churn
        self.version: dict[str, int] = {}  # relative path -> version written
        self.prev: dict[str, list[tuple[int | None, str]]] = {}
        self.cur: dict[str, list[tuple[int | None, str]]] = {}
        self.next_id = 0

    @staticmethod
    def _content(rel: str, ver: int) -> tuple[str, list[tuple[int | None, str]]]:
        rng = random.Random(f"{rel}@{ver}")
        tag = f"{Path(rel).stem} v{ver}"
        if rel.endswith(".txt"):
            text = f"Plain note {tag}: {sentence(rng, 10)}."
            return text + "\n", [(0, text)]
        if rel.endswith(".md"):
            a = f"First paragraph of {tag}: {sentence(rng, 10)}."
            b = f"Second part of {Path(rel).stem}: {sentence(random.Random(rel), 8)}."  # unchanged across versions
            return f"# Title {Path(rel).stem}\n\n{a}\n\n## Later\n\n{b}\n", [(0, a), (1, b)]
        texts = [f"Record {j} of {tag}: {sentence(rng, 6)}." for j in range(3)]
        return "".join(json.dumps({"text": t}) + "\n" for t in texts), [(j, t) for j, t in enumerate(texts)]

    def _new_file(self) -> str:
        n = self.next_id
        self.next_id += 1
        ext = (".txt", ".md", ".jsonl")[n % 3]
        return f"d{n % 7}/sub{n % 3}/note-{n}{ext}"

    def _write(self, rel: str) -> None:
        ver = self.version.get(rel, -1) + 1
        self.version[rel] = ver
        content, _ = self._content(rel, ver)
        p = self.tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp~")  # hidden from ingest by its extension; renamed into place
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(p)

    def _model(self) -> dict[str, list[tuple[int | None, str]]]:
        return {f"file:{(self.tree / rel).resolve()}": self._content(rel, ver)[1] for rel, ver in self.version.items()}

    def measure(self, rng: random.Random) -> float:
        """Time a whole ingest of the initial tree into a scratch store; iteration 1 then ingests the
        same tree into the real (empty) store and is killed, later iterations change the tree first."""
        real = self.home
        self.home = self.home.with_name("ingest-measure")
        try:
            took = super().measure(rng)
        finally:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = real
        self.initial = True
        return took

    def runtime(self, i: int) -> float:
        if self.initial:
            return self.full_runtime
        startup = 1.0
        return startup + max(0.0, self.full_runtime - startup) * self.churn * 1.5

    initial = False

    def prepare(self, i: int, rng: random.Random) -> Path:
        self.prev = self._model()
        if self.initial:
            self.initial = False
            self.prev = {}
        elif not self.version:
            for _ in range(self.n_files):
                self._write(self._new_file())
        else:
            names = sorted(self.version)
            k = max(1, int(len(names) * self.churn))
            for rel in rng.sample(names, k):
                self._write(rel)
            for rel in rng.sample(sorted(self.version), max(1, k // 5)):
                (self.tree / rel).unlink()
                del self.version[rel]
            for _ in range(max(1, k // 5)):
                self._write(self._new_file())
        self.cur = self._model()
        return self.home

    def args(self) -> list[str]:
        return ["ingest", str(self.tree), "--prune-missing", "--json"]

    def env(self, home: Path) -> dict[str, str]:
        return memcli_env(home, self.model)

    def _actual(self, home: Path) -> dict[str, list[tuple[int | None, str]]]:
        out: dict[str, list[tuple[int | None, str]]] = {}
        for r in rows(home):
            if r.state == "active" and r.source.startswith("file:"):  # (other memories are not this job's)
                out.setdefault(r.source, []).append((r.position, r.text))
        return out

    def after_kill(self, home: Path) -> Verdict:
        v = Verdict()
        have = self._actual(home)
        for src in sorted(set(have) | set(self.prev) | set(self.cur)):
            got = sorted(have.get(src, []), key=repr)
            if got not in (sorted(self.prev.get(src, []), key=repr), sorted(self.cur.get(src, []), key=repr)):
                v.problems.append(f"{src}: half-applied ({len(got)} rows)")
                v.lost += 1
        return v

    def complete(self, home: Path) -> Verdict:
        return compare(self.cur, self._actual(home))


class ForgetJob(Job):
    """``memcli forget ID... --yes`` (to the trash) or ``--purge --yes``, on a fresh copy of a template
    store of memories that each carry a unique marker word."""

    def __init__(self, root: Path, model: Path, *, purge: bool, memories: int = 40, targets: int = 5) -> None:
        self.name = "forget --purge" if purge else "forget (trash)"
        self.root = root
        self.model = model
        self.purge = purge
        self.n = memories
        self.k = targets
        self.template = root / ("purge-template" if purge else "trash-template")
        self.markers = [f"mk{i}x{random.Random(i).getrandbits(40):010x}q" for i in range(memories)]
        self.texts = [f"Memory {i} with marker {m}: {sentence(random.Random(m), 10)}." for i, m in enumerate(self.markers)]
        self.targets: list[str] = []
        self.target_texts: list[str] = []
        self.home = self.template
        self.ids: dict[str, str] = {}
        self._was: set[str] = set()

    def build_template(self) -> None:
        if (self.template / "data").exists():
            return
        src = self.root / f"{self.template.name}.jsonl"
        src.write_text("".join(json.dumps({"text": t}) + "\n" for t in self.texts), encoding="utf-8")
        p = memcli(memcli_env(self.template, self.model), "ingest", str(src), "--json")
        assert p.code == 0, p.err
        src.unlink()  # the markers must live only inside the store
        self.ids = {r.text: r.id for r in rows(self.template)}
        assert len(self.ids) == self.n

    def prepare(self, i: int, rng: random.Random) -> Path:
        self.build_template()
        self.home = self.root / f"{self.template.name}-{i}"
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.copytree(self.template, self.home)
        self.target_texts = rng.sample(self.texts, self.k)
        self.targets = [self.ids[t] for t in self.target_texts]
        return self.home

    def args(self) -> list[str]:
        return ["forget", *self.targets, "--yes", "--json", *(["--purge"] if self.purge else [])]

    def env(self, home: Path) -> dict[str, str]:
        return memcli_env(home, self.model)

    def _states(self, home: Path) -> dict[str, str]:
        return {r.text: r.state for r in rows(home)}

    def after_kill(self, home: Path) -> Verdict:
        v = Verdict()
        st = self._states(home)
        others = [t for t in self.texts if t not in self.target_texts]
        v.lost += sum(1 for t in others if st.get(t) != "active")
        done = "absent" if self.purge else "trashed"
        now = {st.get(t, "absent") for t in self.target_texts}
        if now not in ({"active"}, {done}):
            v.problems.append(f"forget of {self.k} ids half-applied: target states {sorted(now)}")
            v.lost += 1
        if v.lost:
            v.problems.append("memories other than the targets changed")
        self._was = now
        return v

    def rerun_code_ok(self, code: int) -> bool:
        """0, or the documented answer to repeating a finished forget: 2 "already in the trash", 3 (purged)
        "no memory with id" -- accepted only when the kill had indeed left the forget complete."""
        done = "absent" if self.purge else "trashed"
        if code == 0:
            return True
        return self._was == {done} and code == (3 if self.purge else 2)

    def complete(self, home: Path) -> Verdict:
        st = self._states(home)
        v = Verdict()
        others = [t for t in self.texts if t not in self.target_texts]
        v.lost += sum(1 for t in others if st.get(t) != "active")
        want = "absent" if self.purge else "trashed"
        wrong = [t for t in self.target_texts if st.get(t, "absent") != want]
        if wrong:
            v.problems.append(f"{len(wrong)} targets not {want}")
        n_rows = len(rows(home))
        if n_rows != self.n - (self.k if self.purge else 0):
            v.duplicates += max(0, n_rows - self.n)
            v.problems.append(f"{n_rows} rows")
        if self.purge:
            found = traces(home, [self.markers[self.texts.index(t)] for t in self.target_texts])
            v.leaks += len(found)
            v.problems += [f"purged text left in {f}" for f in found]
        return v

    def finish(self, home: Path) -> None:
        shutil.rmtree(home, ignore_errors=True)


class ReindexJob(Job):
    """``memcli reindex`` to another embedding model, on a fresh copy of a template store."""

    name = "reindex"

    def __init__(self, root: Path, model: Path, other_model: Path, memories: int = 120) -> None:
        self.root = root
        self.model = model
        self.other = other_model
        self.n = memories
        self.template = root / "reindex-template"
        self.old_model = ""
        rng = random.Random(7)
        self.texts = [f"Reindex memory {i}: {sentence(rng, 14)}." for i in range(memories)]
        self.home = self.template

    def build_template(self) -> None:
        if (self.template / "data").exists():
            return
        src = self.root / "reindex.jsonl"
        src.write_text("".join(json.dumps({"text": t}) + "\n" for t in self.texts), encoding="utf-8")
        p = memcli(memcli_env(self.template, self.model), "ingest", str(src), "--json")
        assert p.code == 0, p.err
        self.old_model = rows(self.template)[0].embed_model

    def prepare(self, i: int, rng: random.Random) -> Path:
        self.build_template()
        self.home = self.root / f"reindex-{i}"
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.copytree(self.template, self.home)
        return self.home

    def args(self) -> list[str]:
        return ["reindex", "--json"]

    def env(self, home: Path) -> dict[str, str]:
        return memcli_env(home, self.other)

    def allowed_findings(self) -> tuple[str, ...]:
        # Until the rerun finishes, the store still names (or is moving away from) the old model: doctor
        # says so and points at `memcli reindex`; every consistency check must still be ok.
        return ("embedding model", "reindex")

    def left_unfinished(self, doctor_err: str, findings: list[str]) -> bool:
        return super().left_unfinished(doctor_err, findings) or any(f.startswith("reindex:") for f in findings)

    def after_kill(self, home: Path) -> Verdict:
        texts = [r.text for r in rows(home) if r.state == "active"]
        return compare({"reindex": [(None, t) for t in self.texts]}, {"reindex": [(None, t) for t in texts]})

    def complete(self, home: Path) -> Verdict:
        rs = rows(home)
        v = compare(
            {"reindex": [(None, t) for t in self.texts]}, {"reindex": [(None, r.text) for r in rs if r.state == "active"]}
        )
        models = {r.embed_model for r in rs}
        if len(models) != 1 or self.old_model in models:
            v.problems.append(f"embedding models after reindex: {sorted(models)}")
        return v

    def finish(self, home: Path) -> None:
        shutil.rmtree(home, ignore_errors=True)


class ChatJob(Job):
    """``memcli chat -m "I moved to CITY."`` against a scripted OpenAI-compatible server (see
    tests/scripted_server.py), one city per iteration, into one growing store: each run stores the
    exchange as episodes, extracts "The user lives in CITY now." and supersedes the previous home.

    What must hold: an exchange is stored whole (the user turn with the assistant's) or not at all;
    no fact is ever stored twice; at most one home is current at any moment (the new fact and the
    retirement of the old one are one transaction); after the rerun, the current home is this
    iteration's city and every earlier one is closed and linked to its successor."""

    name = "chat"

    def __init__(self, root: Path, model: Path, url: str) -> None:
        self.home = root / "chat-home"
        self.model = model
        self.url = url
        self.current = -1
        self.asked: dict[int, int] = {}  # iteration -> how many runs stored its exchange (killed ones too)

    def prepare(self, i: int, rng: random.Random) -> Path:
        self.current = i
        return self.home

    @staticmethod
    def city(i: int) -> str:
        return CITIES[i % len(CITIES)] + ("" if i < len(CITIES) else f"-{i // len(CITIES)}")

    def args(self) -> list[str]:
        return ["chat", "-m", f"I moved to {self.city(self.current)}.", "--json"]

    def env(self, home: Path) -> dict[str, str]:
        return memcli_env(
            home, self.model, MEMCLI_CHAT_BACKEND="openai", MEMCLI_CHAT_URL=self.url,
            MEMCLI_CHAT_SERVER_MODEL="scripted", MEMCLI_CHAT_RELATED_SIMILARITY="0.2",
        )  # fmt: skip

    def _episodes(self, home: Path) -> tuple[dict[str, int], list[str]]:
        """User turns per message, and problems: a user turn without its reply or the reverse."""
        by_source: dict[str, dict[int, str]] = {}
        for r in rows(home):
            if r.source.startswith("chat:") and r.state == "active" and r.text.startswith(("user: ", "assistant: ")):
                by_source.setdefault(r.source, {})[r.position if r.position is not None else -1] = r.text
        counts: dict[str, int] = {}
        problems = []
        for src, turns in by_source.items():
            users = [t for t in turns.values() if t.startswith("user: ")]
            if len(users) != 1 or len(turns) != 2:
                problems.append(f"{src}: {len(turns)} turns stored, not one whole exchange")
            for u in users:
                counts[u.removeprefix("user: ")] = counts.get(u.removeprefix("user: "), 0) + 1
        return counts, problems

    def _facts(self, home: Path) -> list[tuple[str, str, bool, str | None]]:
        """(id, text, current, superseded_by) of every "lives in" fact."""
        q = "SELECT id, text, retired_at IS NULL, superseded_by FROM memories WHERE kind = 'fact' AND state = 'active'"
        return [(r[0], r[1], bool(r[2]), r[3]) for r in read_catalog(home, q) if r[1].startswith("The user lives in ")]

    def _check(self, home: Path, *, done: bool) -> Verdict:
        v = Verdict()
        counts, v.problems = self._episodes(home)
        for i in range(self.current + 1):
            msg = f"I moved to {self.city(i)}."
            n = counts.get(msg, 0)
            if (i < self.current or done) and n == 0:
                v.lost += 1
                v.problems.append(f"exchange {i} missing")
        facts = self._facts(home)
        texts = [t for _, t, _, _ in facts]
        for t in set(texts):
            if texts.count(t) > 1:
                v.duplicates += texts.count(t) - 1
                v.problems.append(f"fact stored {texts.count(t)} times: {t}")
        current = [t for _, t, cur, _ in facts if cur]
        if len(current) > 1:
            v.problems.append(f"{len(current)} homes current at once: {current}")
        want = {f"The user lives in {self.city(i)} now." for i in range(self.current + (1 if done else 0))}
        missing = want - set(texts)
        v.lost += len(missing)
        v.problems += [f"fact lost: {t}" for t in sorted(missing)]
        if done:
            last = f"The user lives in {self.city(self.current)} now."
            if current != [last]:
                v.problems.append(f"current home after the rerun: {current}, expected {last!r}")
            ids = {t: mid for mid, t, _, _ in facts}
            for i in range(self.current):
                _, _, cur, by = next(f for f in facts if f[1] == f"The user lives in {self.city(i)} now.")
                if cur or by is None or by not in ids.values():
                    v.problems.append(f"home {i} not closed and linked to a successor")
        return v

    def after_kill(self, home: Path) -> Verdict:
        return self._check(home, done=False)

    def complete(self, home: Path) -> Verdict:
        return self._check(home, done=True)


CITIES = (
    "Lisbon", "Oslo", "Nairobi", "Kyoto", "Quito", "Tallinn", "Perth", "Montreal", "Dakar", "Hanoi",
    "Bergen", "Cusco", "Porto", "Reykjavik", "Tbilisi", "Valparaiso", "Zanzibar", "Krakow", "Lyon",
    "Adelaide", "Bilbao", "Galway", "Ghent", "Hobart", "Innsbruck", "Jaipur", "Kampala", "Ljubljana",
    "Marrakesh", "Nantes", "Oaxaca", "Palermo", "Riga", "Salzburg", "Trieste", "Uppsala", "Vilnius",
    "Windhoek", "Yerevan", "Zagreb",
)  # fmt: skip


# -- the loop ---------------------------------------------------------------------------------------
@dataclass
class Tally:
    op: str
    attempts: int = 0
    kills: int = 0  # the process was still running when SIGKILL came
    mid_write: int = 0  # ... and left work half-done (completed by the next open, or by the rerun for reindex)
    doctor_ok: int = 0
    reruns_ok: int = 0
    verdict: Verdict = field(default_factory=Verdict)


def iteration(job: Job, i: int, rng: random.Random, tally: Tally) -> None:
    """Prepare, run-and-kill, check after the kill, rerun, check the result. Odd iterations are killed
    after a random delay, even ones at a random point after their first catalog write."""
    runtime = job.runtime(i)
    home = job.prepare(i, rng)
    env = job.env(home)
    tally.attempts += 1
    if i % 2 == 1:
        outcome = run_and_kill(env, job.args(), delay=rng.uniform(0.0, runtime), after_write=None)
    else:
        outcome = run_and_kill(env, job.args(), delay=None, after_write=rng.uniform(0.0, min(1.5, runtime / 2)))
    tally.kills += outcome.killed
    p, report = doctor(env)
    tally.mid_write += job.left_unfinished(p.err, not_ok_findings(report))
    bad = [f for f in not_ok_findings(report) if f.split(":")[0] not in job.allowed_findings()]
    if p.code not in (0, 6) or report is None or bad:
        tally.verdict.problems.append(f"{job.name} #{i}: doctor after the kill (exit {p.code}): {bad or p.err[-500:]}")
    else:
        tally.doctor_ok += 1
    after = job.after_kill(home)
    tally.verdict.problems += [f"{job.name} #{i} after kill: {x}" for x in after.problems]
    rerun = memcli(env, *job.args())
    if job.rerun_code_ok(rerun.code) and "Traceback" not in rerun.err:
        tally.reruns_ok += 1
    else:
        tally.verdict.problems.append(f"{job.name} #{i}: rerun exit {rerun.code}: {rerun.err[-500:]}")
    final = job.complete(home)
    final.problems = [f"{job.name} #{i} after rerun: {x}" for x in final.problems]
    tally.verdict.add(final)
    if not isinstance(job, (AddJob, IngestJob, ChatJob)):
        p, report = doctor(env)
        if p.code != 0 or not_ok_findings(report):
            tally.verdict.problems.append(f"{job.name} #{i}: doctor after the rerun: {not_ok_findings(report)}")
    job.finish(home)


def final_doctor(job: Job, tally: Tally) -> None:
    """Growing stores (add, ingest) get one more full doctor at the end of their loop."""
    p, report = doctor(job.env(job.home))
    if p.code != 0 or not_ok_findings(report):
        tally.verdict.problems.append(f"{job.name}: final doctor: {not_ok_findings(report)} {p.err[-300:]}")


def table(tallies: Sequence[Tally]) -> str:
    head = (
        "| operation | kills | process already done | left mid-write (completed at next open¹) | doctor ok after kill "
        "| reruns ok | memories lost | duplicates | purged text left |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for t in tallies:
        lines.append(
            f"| {t.op} | {t.kills} | {t.attempts - t.kills} | {t.mid_write} | {t.doctor_ok}/{t.attempts} "
            f"| {t.reruns_ok}/{t.attempts} | {t.verdict.lost} | {t.verdict.duplicates} | {t.verdict.leaks} |"
        )
    lines.append("\n¹ reindex: a kill that left an interrupted reindex (doctor names it; the rerun finishes it).")
    return "\n".join(lines)
