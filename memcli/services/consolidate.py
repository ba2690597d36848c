"""`memcli consolidate`: leave the store smaller, truer and better organised (run it nightly).

Steps, in order; the LLM ones are skipped (and the report says why) without a chat model:

* dedupe (no LLM) — near-identical facts/summaries merge into the earliest one (union of tags,
  earliest event time, summed recall counts, ``merged_from`` links, audit); copies go to the trash;
* reconcile (LLM) — pairs of related current facts: the older of a contradiction is retired with the
  time it stopped being true, refinements merge into one statement; nothing is deleted;
* summarise (LLM) — each finished day of episodes becomes a daily summary, each finished week of
  daily summaries a weekly one (HEMA/MemoryBank's two levels), linked to what they summarise;
* profile (LLM) — the user portrait (facts, preferences, communication style) is rewritten from the
  facts learned since the last one, within ``[chat] profile_tokens``;
* link (no LLM) — changed memories get ``related`` links to their closest neighbours (A-MEM);
* decay (no LLM) — retention scores are refreshed and prune candidates reported (never pruned).

Safe to kill at any point and to run from cron:

* a lock file (``DATA/consolidate.lock``) keeps two runs apart (the second fails with ExitCode.BUSY,
  or queues with ``wait``); memory writes go through the store and its write lock;
* each step reads a change feed — the audit log, whose ``seq`` only grows — from its own cursor in the
  catalog's meta table, and commits the cursor after each batch; work that failed or cannot be done
  yet holds the cursor back, so it is fed again next time;
* every change is one catalog transaction (a merge, a retirement, a batch of links), or, where the
  store needs several (a new summary, then its links and the retirement of the one it replaces), an
  intent written to the meta table first and completed by the next run if this one dies between;
* what a step has done is checked against the store itself before it is redone (a day whose current
  summary links to exactly its episodes is done), so a run resumed from an older cursor repeats nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from memcli.backends.base import ChatMessage, ChatModel
from memcli.context import Context
from memcli.errors import ExitCode, MemcliFailure, config_error
from memcli.paths import ensure_private_dir
from memcli.prompts import consolidate as prompts
from memcli.records import Kind, Memory, ts
from memcli.services import grounding
from memcli.services.extract import ask_json
from memcli.store import COLUMNS, NewMemory, content_hash, embed_input, row_to_memory

STEPS = ("dedupe", "reconcile", "summarise", "profile", "link", "decay")
LLM_STEPS = frozenset({"reconcile", "summarise", "profile"})
SOURCE = "consolidate"  # source prefix of the memories consolidate writes (consolidate:daily, ...)
INTENT = "consolidate:intent"
ADDED = ("add", "restore")  # audit actions that bring a memory (back) into the store
# Tags that say what a memory is rather than what it is about: sharing one is no reason to link.
STRUCTURAL_TAGS = frozenset({"chat", "daily", "weekly", "profile", "fact", "preference", "event"})
EXAMPLES = 5
# The starter model (what chat uses when none is configured) is not used here: its merge and
# supersede decisions are unreliable (benchmarks/RESULTS.md, learning), and this runs unattended.
NO_MODEL = "no chat model configured (the starter model is not used for consolidation)"
PROFILE_MESSAGES = 15  # recent user messages shown for their communication style

MCOLS = ", ".join("m." + c.strip() for c in COLUMNS.split(","))
Matrix = npt.NDArray[np.float32]


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepReport:
    step: str
    status: str  # done, planned (dry run), skipped, failed
    reason: str = ""  # why it was skipped or failed
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    llm_calls: int = 0
    failures: tuple[str, ...] = ()  # items that failed (quarantined LLM answers...): nothing applied
    examples: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "status": self.status,
            "reason": self.reason,
            "counts": dict(self.counts),
            "seconds": round(self.seconds, 3),
            "llm_calls": self.llm_calls,
            "failures": list(self.failures),
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class ConsolidateReport:
    space: str
    started_at: datetime
    dry_run: bool
    llm: str | None  # the chat model used (None: LLM steps skipped)
    since: str  # what "changed" meant: "last run", "everything", or the --since time
    steps: tuple[StepReport, ...]
    seconds: float
    recovered: int = 0  # changes a killed run left half-done, completed first
    log_file: str = ""

    @property
    def llm_calls(self) -> int:
        return sum(s.llm_calls for s in self.steps)

    @property
    def failures(self) -> int:
        return sum(len(s.failures) for s in self.steps) + sum(1 for s in self.steps if s.status == "failed")

    @property
    def needs_attention(self) -> bool:
        """Failures, or LLM steps skipped for a reason the user did not choose (no model configured)."""
        return self.failures > 0 or any(
            s.status == "skipped" and s.reason != "--no-llm" for s in self.steps if s.step in LLM_STEPS
        )

    def step(self, name: str) -> StepReport:
        return next(s for s in self.steps if s.step == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "started_at": ts(self.started_at),
            "dry_run": self.dry_run,
            "llm": self.llm,
            "since": self.since,
            "seconds": round(self.seconds, 3),
            "llm_calls": self.llm_calls,
            "failures": self.failures,
            "recovered": self.recovered,
            "needs_attention": self.needs_attention,
            "log_file": self.log_file,
            "steps": [s.to_json() for s in self.steps],
        }


# -- the run ---------------------------------------------------------------------------------------
def consolidate(
    ctx: Context,
    *,
    space: str | None = None,
    model: ChatModel | str | None = None,
    use_llm: bool = True,
    dry_run: bool = False,
    since: datetime | None = None,
    wait: bool = False,
    now: datetime | None = None,
) -> ConsolidateReport:
    """Run every step (see the module docstring). ``model``: the chat model, or a GGUF path / model name
    (default: the configured one); ``use_llm=False`` runs only the steps that need none; ``since``
    limits the work to what changed since then (default: since the last run); ``dry_run`` reports what
    would change and changes nothing; ``wait`` queues behind a running consolidate instead of failing
    with ExitCode.BUSY; ``now`` is the reference time (which days and weeks are over)."""
    space = ctx.space(space)
    started = datetime.now().astimezone()
    t0 = time.perf_counter()
    with run_lock(ctx, wait=wait):
        run = _Run(ctx, space, dry_run, since, now or started)
        recovered = 0 if dry_run else _recover(ctx)
        since_label = run.since_label()
        steps: list[StepReport] = []
        try:
            llm_name, why_no_llm = run.choose_model(model, use_llm)
            for name in STEPS:
                if name in LLM_STEPS and why_no_llm:
                    steps.append(StepReport(name, "skipped", why_no_llm))
                    continue
                steps.append(run.step(name))
        finally:
            if run.loaded_model is not None:
                run.loaded_model.close()
        report = ConsolidateReport(
            space, started, dry_run, llm_name, since_label, tuple(steps), time.perf_counter() - t0, recovered
        )
        if not dry_run:
            with ctx.store.catalog.transaction() as db:
                ctx.store.catalog.set_meta(db, f"consolidate:{space}:last_run", json.dumps(report.to_json()))
            report = _log(ctx, report)
    return report


@contextmanager
def run_lock(ctx: Context, *, wait: bool) -> Iterator[None]:
    """The consolidate lock: one run per data directory (fcntl, released by the OS if the process dies)."""
    path = ensure_private_dir(ctx.paths.data_dir) / "consolidate.lock"
    f = open(os.open(path, os.O_CREAT | os.O_RDWR, 0o600), "r+")  # noqa: SIM115 - held across the yield
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                holder = f.read().strip()
                raise MemcliFailure(
                    "another `memcli consolidate` is running on this store" + (f" (pid {holder})" if holder else ""),
                    hint="Let it finish: nothing was done by this run. Use --wait to queue behind it.",
                    code=ExitCode.BUSY,
                )
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")  # for the message a second run prints
        f.flush()
        yield
    finally:
        f.close()  # closing releases the lock


def _log(ctx: Context, report: ConsolidateReport) -> ConsolidateReport:
    """Append the report as one JSON line to LOGS/consolidate.log (owner-only)."""
    path = ensure_private_dir(ctx.paths.log_dir) / "consolidate.log"
    done = ConsolidateReport(**{**report.__dict__, "log_file": str(path)})
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(done.to_json(), ensure_ascii=False) + "\n")
    return done


@dataclass
class _Step:
    """What a step has done so far (frozen into a StepReport at the end)."""

    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    calls: int = 0
    status: str = "done"
    reason: str = ""

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def example(self, text: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)


class _Feed:
    """A step's change feed: memories the audit log shows changed after the step's cursor."""

    def __init__(self, run: _Run, step: str) -> None:
        self.run, self.step = run, step
        self.key = f"consolidate:{run.space}:{step}"
        raw = run.cat.meta(self.key)
        old = json.loads(raw) if raw else {"seq": 0, "at": 0.0}
        self.cursor, self.cursor_at = int(old["seq"]), float(old["at"])
        self.at = time.time()
        self.hi = int(run.cat.db.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0])
        self.hold: int | None = None  # lowest seq that must be fed again (failed or not yet possible)

    def items(
        self, kinds: Sequence[str], *, actions: Sequence[str] | None = ADDED, active_only: bool = True
    ) -> list[tuple[int, Memory]]:
        """(latest seq, memory) of memories of ``kinds`` changed in (cursor, hi], oldest change first."""
        q = (
            f"SELECT max(a.seq), {MCOLS} FROM audit a JOIN memories m ON m.id = a.memory_id "
            f"WHERE a.seq <= ? AND m.space = ? AND m.kind IN ({','.join('?' * len(kinds))})"
        )
        args: list[Any] = [self.hi, self.run.space, *kinds]
        if self.run.since_ts is not None:
            q += " AND a.at >= ?"
            args.append(self.run.since_ts)
        else:
            # seq alone is not enough: a purge deletes audit rows, and if they were the newest, SQLite
            # hands their numbers out again; rows written after the cursor was taken are newer anyway.
            # (A row timed before it but committed after has a seq above it.)
            q += " AND (a.seq > ? OR a.at > ?)"
            args += [self.cursor, self.cursor_at]
        if actions is not None:
            q += f" AND a.action IN ({','.join('?' * len(actions))})"
            args += list(actions)
        if active_only:
            q += " AND m.state = 'active' AND m.retired_at IS NULL"
        rows = self.run.cat.db.execute(q + " GROUP BY m.id ORDER BY 1", args).fetchall()
        return [(int(r[0]), row_to_memory(r[1:])) for r in rows]

    def defer(self, seq: int) -> None:
        self.hold = seq if self.hold is None else min(self.hold, seq)

    def commit(self, upto: int | None = None) -> None:
        """Everything fed up to ``upto`` (default: the whole feed) is done, except what was deferred."""
        if self.run.dry_run:
            return
        with self.run.cat.transaction() as db:
            self.save(db, self.hi if upto is None else upto)

    def save(self, db: Any, seq: int) -> None:
        """Move the cursor to ``seq`` inside the caller's transaction (with the work it stands for)."""
        if self.hold is not None:
            seq = min(seq, self.hold - 1)
        # After a --since run the cursor may only move if the window covered everything since it.
        if seq <= self.cursor or (self.run.since_ts is not None and self.run.since_ts > self.cursor_at):
            return
        self.run.cat.set_meta(db, self.key, json.dumps({"seq": seq, "at": self.at}))
        self.cursor = seq


class _Run:
    def __init__(self, ctx: Context, space: str, dry_run: bool, since: datetime | None, now: datetime) -> None:
        self.ctx, self.space, self.dry_run, self.now = ctx, space, dry_run, now
        self.since_ts = since.timestamp() if since is not None else None
        self.cfg = ctx.settings.consolidate
        self.store = ctx.store
        self.cat = self.store.catalog
        self.model: ChatModel | None = None
        self.loaded_model: ChatModel | None = None  # loaded here, so closed here
        self.calls = 0
        for key in ("dedupe_kinds", "link_kinds"):
            bad = [k for k in getattr(self.cfg, key) if k not in {x.value for x in Kind}]
            if bad:
                raise config_error(
                    f"[consolidate] {key} has unknown kinds: {', '.join(bad)}",
                    hint=f"Use some of: {', '.join(k.value for k in Kind)}.",
                )

    def since_label(self) -> str:
        if self.since_ts is not None:
            return str(ts(datetime.fromtimestamp(self.since_ts).astimezone()))
        last = self.cat.meta(f"consolidate:{self.space}:last_run")
        return f"last run ({json.loads(last)['started_at']})" if last else "everything"

    def choose_model(self, model: ChatModel | str | None, use_llm: bool) -> tuple[str | None, str]:
        """(model name, why there is none). A model named here or in the config is loaded now (not in a
        dry run); one the config names that fails to load skips the LLM steps rather than the whole run."""
        cs = self.ctx.settings.chat
        if not use_llm:
            return None, "--no-llm"
        if model is not None and not isinstance(model, str):
            self.model = model
            return model.model_id, ""
        if model is None and not cs.model and not (cs.backend == "openai" and cs.url):
            return None, NO_MODEL
        if self.dry_run:
            return model or cs.model or cs.server_model or cs.url, ""
        try:
            self.model = self.loaded_model = self.ctx.load_chat_model(model)
        except MemcliFailure as e:
            if model is not None:
                raise  # asked for by name: say so rather than carry on without it
            return None, f"the configured chat model could not be loaded: {e.message}"
        return self.model.model_id, ""

    def step(self, name: str) -> StepReport:
        t0 = time.perf_counter()
        st = _Step(status="planned" if self.dry_run else "done")
        fn: Callable[[_Step], None] = getattr(self, f"_{name}")
        try:
            fn(st)
        except Exception as e:  # one broken step must not stop the others (cron has nobody to ask)
            st.status, st.reason = "failed", getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        return StepReport(
            name, st.status, st.reason, st.counts, time.perf_counter() - t0, st.calls, tuple(st.failures), tuple(st.examples)
        )

    # -- helpers ---------------------------------------------------------------------------------
    def pool(self, kind: str, *, owned_ok: bool) -> _Pool:
        """Every active, current memory of ``kind`` with its vector (the catalog is the truth: no ANN misses)."""
        q = f"SELECT {COLUMNS}, embedding FROM memories WHERE space = ? AND kind = ? AND state = 'active' AND retired_at IS NULL"
        rows = self.cat.db.execute(q, (self.space, kind)).fetchall()
        owned = set() if owned_ok else self.ingested_sources()
        mems, vecs = [], []
        for r in rows:
            m = row_to_memory(r[:-1])
            if m.source in owned or m.source.split("#", 1)[0] in owned:
                continue
            mems.append(m)
            vecs.append(np.frombuffer(r[-1], dtype=np.float32))
        return _Pool(mems, np.vstack(vecs) if vecs else np.zeros((0, 1), dtype=np.float32))

    def ingested_sources(self) -> set[str]:
        """Sources ingest keeps in sync (a file, a named stdin): their memories are its to change."""
        return {r[0] for r in self.cat.db.execute("SELECT source FROM sources WHERE space = ?", (self.space,))}

    def can_call(self) -> bool:
        return self.cfg.max_llm_calls <= 0 or self.calls < self.cfg.max_llm_calls

    def ask(
        self, st: _Step, step: str, prompt: str, schema: dict[str, Any], source: str, max_tokens: int
    ) -> dict[str, Any] | None:
        """One validated LLM answer, or None (it was quarantined and the failure recorded)."""
        assert self.model is not None
        self.calls += 1
        st.calls += 1
        messages = [ChatMessage("system", prompts.SYSTEM), ChatMessage("user", prompt)]
        try:
            return ask_json(
                self.ctx, self.model, messages, schema, operation=f"consolidate:{step}", source=source, max_tokens=max_tokens
            )
        except ValueError as e:
            st.failures.append(f"{source}: {e}")
            return None

    def write(
        self, item: NewMemory, *, links: Sequence[tuple[str, str]], replaces: Sequence[tuple[str, str]], note: dict[str, Any]
    ) -> str:
        """Add a memory, then link it and retire (or trash) what it replaces — completed by the next run
        if this one dies in between (see ``_recover``)."""
        emb = self.ctx.embedder
        vector = emb.embed_documents([embed_input(item.text, item.keys)])[0]
        intent = {
            "space": self.space,
            "hash": content_hash(item.text),
            "at": time.time(),
            "links": [list(x) for x in links],
            "replaces": [list(x) for x in replaces],
            "note": note,
        }
        _recover(self.ctx)  # one intent at a time: finish one an earlier failure in this run left
        with self.cat.transaction() as db:
            self.cat.set_meta(db, INTENT, json.dumps(intent))
        [mid] = self.store.add(self.space, [(item, vector)], emb.model_id)
        _complete(self.ctx, intent, mid)
        return mid

    def summaries(self, tags: Sequence[str]) -> list[Memory]:
        """Current summaries consolidate wrote with all of ``tags``, newest first."""
        q = (
            f"SELECT {COLUMNS} FROM memories m WHERE space = ? AND kind = 'summary' AND state = 'active' "
            "AND retired_at IS NULL AND source LIKE 'consolidate:%' "
            + "".join(" AND EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)" for _ in tags)
            + " ORDER BY recorded_at DESC, rowid DESC"
        )
        return [row_to_memory(r) for r in self.cat.db.execute(q, [self.space, *tags])]

    def targets(self, src: str, kind: str) -> set[str]:
        return {r[0] for r in self.cat.db.execute("SELECT dst FROM links WHERE src = ? AND kind = ?", (src, kind))}

    def sources_removed(self, summary: Memory) -> bool:
        """Was something this summary was written from forgotten since (trashed, or purged: its link is
        gone)? Then the summary still says it, and is trashed rather than kept as history."""
        linked = self.targets(summary.id, "summarises")
        if any(m.state != "active" for m in self.cat.by_ids(linked).values()):
            return True
        row = self.cat.db.execute(
            "SELECT detail FROM audit WHERE memory_id = ? AND action = 'summarise' ORDER BY seq DESC LIMIT 1", (summary.id,)
        ).fetchone()
        return row is not None and int(json.loads(row[0]).get("sources", 0)) > len(linked)

    # -- dedupe ----------------------------------------------------------------------------------
    def _dedupe(self, st: _Step) -> None:
        cfg = self.cfg
        feed = _Feed(self, "dedupe")
        changed = feed.items(cfg.dedupe_kinds)
        # A copy the user restored after a merge stays: they said it is not a duplicate.
        restored = {r[0] for r in self.cat.db.execute("SELECT dst FROM links WHERE kind = 'merged_from'")}
        pools: dict[str, _Pool] = {}
        gone: set[str] = set()
        for b in range(0, len(changed), cfg.batch_size):
            batch = changed[b : b + cfg.batch_size]
            for _, m in batch:
                st.add("checked")
                if m.id in gone or m.id in restored or m.source.startswith(SOURCE + ":"):
                    continue  # consolidate's own summaries are one per period by construction
                pool = pools.get(m.kind.value)
                if pool is None:
                    pool = pools[m.kind.value] = self.pool(m.kind.value, owned_ok=False)
                row = pool.row.get(m.id)
                if row is None:
                    continue  # ingested: its file is the truth
                sims = pool.vecs @ pool.vecs[row]
                near = {int(i) for i in np.nonzero(sims >= cfg.duplicate_similarity)[0]} | pool.same.get(_norm(m.text), set())
                dups = [
                    pool.mems[i] for i in sorted(near)
                    if i != row and pool.mems[i].id not in gone and pool.mems[i].id not in restored
                    and not pool.mems[i].source.startswith(SOURCE + ":")
                    and self.duplicate(m, pool.mems[i], float(sims[i]))
                ]  # fmt: skip
                if not dups:
                    continue
                members = [m, *dups]
                keep = min(members, key=lambda x: (x.recorded_at, x.id))  # the first learned keeps its id
                kv = pool.vecs[pool.row[keep.id]]
                # Every copy must be a duplicate of the survivor too, not just of m (no chains).
                merged = [x for x in members if x is not keep and self.duplicate(x, keep, float(pool.vecs[pool.row[x.id]] @ kv))]
                if not merged or (not self.dry_run and not self.merge(keep.id, [x.id for x in merged])):
                    continue
                gone.update(x.id for x in merged)
                st.add("clusters")
                st.add("merged", len(merged))
                st.example(f"{keep.id[:8]} kept, {len(merged)} merged: {_short(keep.text)}")
            feed.commit(batch[-1][0])
        feed.commit()

    def duplicate(self, a: Memory, b: Memory, similarity: float) -> bool:
        """The same words after normalising (case, punctuation, spacing: whatever the embedding says), or
        near-identical embeddings and texts."""
        if _norm(a.text) == _norm(b.text):
            return True
        return similarity >= self.cfg.duplicate_similarity and same_text(a.text, b.text, self.cfg.duplicate_jaccard)

    def merge(self, keep_id: str, merged_ids: Sequence[str]) -> bool:
        """One transaction: the survivor takes the copies' tags, earliest times and recall counts, links
        to each (``merged_from``, and their other links), and the copies go to the trash."""
        store, cat = self.store, self.cat
        with store.write_lock():
            fresh = cat.by_ids([keep_id, *merged_ids])
            keep = fresh.get(keep_id)
            copies = [fresh[i] for i in merged_ids if i in fresh and fresh[i].state == "active" and fresh[i].current]
            if keep is None or keep.state != "active" or not keep.current or not copies:
                return False  # changed since it was read (a chat wrote or forgot meanwhile)
            group = [keep, *copies]
            events = [x.event_at.timestamp() for x in group if x.event_at]
            valid = [x.valid_from.timestamp() for x in group if x.valid_from]
            last = [x.last_access.timestamp() for x in group if x.last_access]
            event_at = min(events) if events else None
            moved = event_at != (keep.event_at.timestamp() if keep.event_at else None)
            ids = [x.id for x in copies]
            members = {x.id for x in group}
            now = time.time()
            with cat.transaction() as db:
                db.execute(
                    "UPDATE memories SET tags = ?, event_at = ?, valid_from = ?, access_count = ?, last_access = ?, "
                    "importance = ?, pinned = ?, vec_state = CASE WHEN ? THEN 'pending_add' ELSE vec_state END WHERE id = ?",
                    (
                        json.dumps(list(dict.fromkeys(t for x in group for t in x.tags)), ensure_ascii=False),
                        event_at,
                        min(valid) if valid else None,
                        sum(x.access_count for x in group),
                        max(last) if last else None,
                        max(x.importance for x in group),
                        int(any(x.pinned for x in group)),
                        int(moved),  # the index filters on the event time: replay the survivor's entry
                        keep.id,
                    ),
                )
                cat.fts_remove(db, ids)
                db.execute(
                    "UPDATE memories SET state = 'trashed', trashed_at = ?, vec_state = 'pending_remove' "
                    f"WHERE id IN ({','.join('?' * len(ids))})",
                    [now, *ids],
                )
                for i in ids:
                    db.execute(
                        "INSERT OR IGNORE INTO links(src, dst, kind, at) VALUES(?, ?, 'merged_from', ?)", (keep.id, i, now)
                    )
                    for src, kind, dst in cat.links(i):  # keep provenance: the survivor inherits the copy's links
                        src2, dst2 = (keep.id if src == i else src), (keep.id if dst == i else dst)
                        if kind != "merged_from" and src2 != dst2 and not (src2 in members and dst2 in members):
                            db.execute(
                                "INSERT OR IGNORE INTO links(src, dst, kind, at) VALUES(?, ?, ?, ?)", (src2, dst2, kind, now)
                            )
                cat.audit(
                    db,
                    now,
                    [(keep.id, "merge", {"merged": ids, "reason": "duplicate"})]
                    + [(i, "trash", {"reason": "merged", "into": keep.id}) for i in ids],
                )
            store.reconcile()  # the store's own replay: drop the copies' vectors, re-file the survivor's
        return True

    # -- reconcile -------------------------------------------------------------------------------
    def _reconcile(self, st: _Step) -> None:
        cfg = self.cfg
        feed = _Feed(self, "reconcile")
        # Facts consolidate wrote itself came from a judgement over their neighbours already.
        changed = [(s, m) for s, m in feed.items([Kind.FACT.value]) if not m.source.startswith(SOURCE + ":")]
        pool = self.pool(Kind.FACT.value, owned_ok=True)
        done: set[str] = set()  # retired in this run
        asked: set[frozenset[str]] = set()
        for seq, m in changed:
            st.add("checked")
            row = pool.row.get(m.id)
            if row is None or m.id in done:
                continue
            sims = pool.vecs @ pool.vecs[row]
            order = [int(i) for i in np.argsort(-sims) if int(i) != row and sims[i] >= cfg.related_similarity]
            partners = [pool.mems[i] for i in order if pool.mems[i].id not in done][: cfg.reconcile_candidates]
            for other in partners:
                pair = frozenset((m.id, other.id))
                if pair in asked or m.id in done:
                    continue
                asked.add(pair)
                if self.duplicate(m, other, float(sims[pool.row[other.id]])):
                    continue  # dedupe's business
                st.add("pairs")
                if self.dry_run:
                    continue
                if not self.can_call():
                    feed.defer(seq)
                    st.add("deferred")
                    break
                older, newer = sorted((m, other), key=lambda x: (_start(x), x.recorded_at))
                retired = self.judge(st, older, newer)
                done.update(retired)
            feed.commit(seq)
        feed.commit()

    def judge(self, st: _Step, older: Memory, newer: Memory) -> list[str]:
        """Ask how two facts relate and apply the answer. Returns the ids it retired."""
        prompt = prompts.RECONCILE.format(
            older=older.text, newer=newer.text, older_when=_day(_start(older)), newer_when=_day(_start(newer))
        )
        answer = self.ask(st, "reconcile", prompt, prompts.RECONCILE_SCHEMA, f"facts:{older.id},{newer.id}", 200)
        if answer is None:
            return []
        fresh = self.cat.by_ids([older.id, newer.id])
        if any(x.id not in fresh or fresh[x.id].state != "active" or not fresh[x.id].current for x in (older, newer)):
            return []  # changed while the model was thinking
        older, newer = fresh[older.id], fresh[newer.id]
        if answer["relation"] == "supersede":
            self.store.retire(older, newer.id, valid_until=_start(newer), reason="supersede")
            st.add("superseded")
            st.example(f"superseded: {_short(older.text)} → {_short(newer.text)}")
            return [older.id]
        if answer["relation"] != "refine":
            st.add("unrelated")
            return []
        text = " ".join(answer["text"].split())
        if text and not grounding.supported_by(text, f"{older.text} {newer.text}").grounded:
            # The merge says something neither fact did (a small model answered "refine" as the text):
            # both facts stay as they are rather than give way to words nobody said.
            st.add("unsupported merge kept apart")
            st.example(f"merge not supported by the facts: {_short(text)}")
            return []
        if not text or _norm(text) == _norm(newer.text):
            self.store.retire(older, newer.id, valid_until=None, reason="refine")
            retired = [older.id]
        elif _norm(text) == _norm(older.text):
            self.store.retire(newer, older.id, valid_until=None, reason="refine")
            retired = [newer.id]
        else:
            events = [x.event_at.timestamp() for x in (older, newer) if x.event_at]
            item = NewMemory(
                text=text, kind=Kind.FACT, source=f"{SOURCE}:reconcile", event_at=min(events) if events else None,
                valid_from=_start(older), tags=tuple(dict.fromkeys((*older.tags, *newer.tags))),
                importance=max(older.importance, newer.importance), pinned=older.pinned or newer.pinned,
            )  # fmt: skip
            self.write(item, links=[], replaces=[(older.id, "refine"), (newer.id, "refine")], note={"op": "refine"})
            retired = [older.id, newer.id]
        st.add("refined")
        st.example(f"refined: {_short(older.text)} + {_short(newer.text)}")
        return retired

    # -- summarise -------------------------------------------------------------------------------
    def _summarise(self, st: _Step) -> None:
        feed = _Feed(self, "summarise")
        today = self.now.astimezone().date()
        this_week = today - timedelta(days=today.weekday())
        # Trashed turns count too: a day that lost one is summarised again without it.
        fed = feed.items([Kind.EPISODE.value], actions=None, active_only=False)
        days: dict[date, int] = {}
        for seq, m in fed:
            d = _local_day((m.event_at or m.recorded_at).timestamp())
            days[d] = min(days.get(d, seq), seq)
        weeks: dict[date, int] = {}
        failed_weeks: set[date] = set()
        for d in sorted(days):
            week = d - timedelta(days=d.weekday())
            weeks[week] = min(weeks.get(week, days[d]), days[d])
            if d >= today:
                feed.defer(days[d])  # not over yet: summarised once it is
                continue
            if not self.summarise_day(st, d):
                feed.defer(days[d])
                failed_weeks.add(week)
        for week in sorted(weeks):
            if week >= this_week or week in failed_weeks:
                feed.defer(weeks[week])  # a week is summarised when it is over and all its days are
                continue
            if not self.summarise_week(st, week):
                feed.defer(weeks[week])
        feed.commit()

    def summarise_day(self, st: _Step, d: date) -> bool:
        """Summarise one day if it needs it. False: it could not be done now (failure, call budget)."""
        start = _day_start(d)
        q = (
            f"SELECT {COLUMNS} FROM memories WHERE space = ? AND state = 'active' AND retired_at IS NULL AND kind = 'episode' "
            "AND coalesce(event_at, recorded_at) >= ? AND coalesce(event_at, recorded_at) < ? "
            "ORDER BY coalesce(event_at, recorded_at), source, position"
        )
        episodes = [row_to_memory(r) for r in self.cat.db.execute(q, (self.space, start, _day_start(d + timedelta(days=1))))]
        lines = [f"{(m.event_at or m.recorded_at).astimezone():%H:%M} {m.text}" for m in episodes]
        return self.summarise_period(st, "daily", d.isoformat(), d, episodes, lines, f"{d:%A %d %B %Y}")

    def summarise_week(self, st: _Step, week: date) -> bool:
        days = [week + timedelta(days=i) for i in range(7)]
        dailies = [s for d in days for s in self.summaries(["daily", d.isoformat()])[:1]]
        year, num, _ = week.isocalendar()
        lines = [f"{s.tags[1] if len(s.tags) > 1 else ''}: {s.text}" for s in dailies]
        words = f"week {num} of {year}, {days[0]:%d %B} to {days[-1]:%d %B %Y}"
        return self.summarise_period(st, "weekly", f"{year}-W{num:02d}", week, dailies, lines, words)

    def summarise_period(
        self, st: _Step, level: str, tag: str, first: date, sources: list[Memory], lines: list[str], words: str
    ) -> bool:
        current = self.summaries([level, tag])
        want = {m.id for m in sources}
        if current and self.targets(current[0].id, "summarises") == want and len(current) == 1:
            return True  # already summarised, nothing new since
        if not sources and not current:
            return True
        key = "days" if level == "daily" else "weeks"
        st.add(f"{key}_to_summarise")
        if self.dry_run:
            return True
        replaces = [(s.id, "trash" if self.sources_removed(s) else "refine") for s in current]
        if not sources:  # everything it summarised was forgotten
            for s in current:
                self.store.trash([s], reason="what it summarised was forgotten")
            st.add("summaries_trashed", len(current))
            return True
        text = self.llm_summary(st, level, tag, first, lines)
        if text is None:
            return False
        item = NewMemory(
            text=text, kind=Kind.SUMMARY, source=f"{SOURCE}:{level}", event_at=_day_start(first), tags=(level, tag),
            keys=f"{level} summary {words}", importance=0.6,
        )  # fmt: skip
        links = [("summarises", m.id) for m in sources]
        self.write(item, links=links, replaces=replaces, note={"op": "summarise", "period": tag, "sources": len(sources)})
        st.add(f"{level}_written")
        st.add("summaries_replaced", len(current))
        st.example(f"{tag}: {_short(text)}")
        return True

    def llm_summary(self, st: _Step, level: str, tag: str, first: date, lines: list[str]) -> str | None:
        """Summarise ``lines`` in parts that fit [consolidate] input_tokens, each building on the last."""
        assert self.model is not None
        count, budget = self.model.count_tokens, self.cfg.input_tokens
        parts: list[list[str]] = [[]]
        used = 0
        for line in lines:
            n = count(line) + 1
            if n > budget:  # one enormous turn: its start says what it is about
                line, n = line[: budget * 3], budget
            if parts[-1] and used + n > budget:
                parts.append([])
                used = 0
            parts[-1].append(line)
            used += n
        words = self.cfg.daily_words if level == "daily" else self.cfg.weekly_words
        summary = ""
        for part in parts:
            if not self.can_call():
                st.add("deferred")
                return None
            items = "\n".join(part)
            if level == "daily":
                earlier = prompts.DAILY_EARLIER.format(summary=summary) if summary else ""
                prompt = prompts.DAILY.format(day=f"{first:%A %d %B %Y}", words=words, earlier=earlier, items=items)
            else:
                last = first + timedelta(days=6)
                prompt = prompts.WEEKLY.format(week=tag, first=first.isoformat(), last=last.isoformat(), words=words, items=items)
            answer = self.ask(st, "summarise", prompt, prompts.SUMMARY_SCHEMA, f"{level}:{tag}", words * 2 + 64)
            if answer is None:
                return None
            summary = " ".join(answer["summary"].split())
        return summary or None

    # -- profile ---------------------------------------------------------------------------------
    def _profile(self, st: _Step) -> None:
        feed = _Feed(self, "profile")
        # Any change to a fact (learned, retired, merged, forgotten) may change the portrait.
        changed = feed.items([Kind.FACT.value], actions=None, active_only=False)
        old = _newest_profile(self)
        if not changed and old is not None:
            return feed.commit()
        merged = {r[0] for r in self.cat.db.execute("SELECT dst FROM links WHERE kind = 'merged_from'")}
        fresh = [m for _, m in changed if m.state == "active" and m.current]
        # A merged copy is not a dropped fact: its survivor still says it.
        gone = [m for _, m in changed if not (m.state == "active" and m.current) and m.id not in merged]
        if old is None:  # the first portrait: from every current fact
            fresh = self.pool(Kind.FACT.value, owned_ok=True).mems
        if not fresh and not gone:
            return feed.commit()
        st.add("facts_considered", len(fresh))
        st.add("facts_dropped", len(gone))
        if self.dry_run:
            st.add("profile_to_update")
            return None
        assert self.model is not None
        if not self.can_call():
            st.add("deferred")
            return None  # the cursor stays: next run
        budget = self.ctx.settings.chat.profile_tokens
        fresh.sort(key=lambda m: _start(m))
        facts = _fit_lines([f"- {m.text}" for m in fresh], self.cfg.input_tokens // 2, self.model.count_tokens, newest_last=True)
        retired = _fit_lines([f"- {m.text}" for m in gone], self.cfg.input_tokens // 4, self.model.count_tokens, newest_last=True)
        messages = _fit_lines(
            [f"- {_short(m.text.removeprefix('user: '), 200)}" for m in self.recent_user_messages()],
            self.cfg.input_tokens // 4, self.model.count_tokens, newest_last=True,
        )  # fmt: skip
        prompt = prompts.PROFILE.format(
            words=int(budget * 0.7), profile=old.text if old else prompts.NONE, facts=facts or prompts.NONE,
            retired=retired or prompts.NONE, messages=messages or prompts.NONE,
        )  # fmt: skip
        answer = self.ask(st, "profile", prompt, prompts.PROFILE_SCHEMA, "profile", budget * 2 + 128)
        if answer is None:
            return None  # quarantined; the cursor stays, so it is tried again next run
        text, dropped = render_profile(answer, budget, self.model.count_tokens)
        st.add("profile_lines_cut", dropped)
        if old is not None and _norm(text) == _norm(old.text):
            st.add("profile_unchanged")
            return feed.commit()
        item = NewMemory(text=text, kind=Kind.PROFILE, source=f"{SOURCE}:profile", tags=("profile",), importance=0.9)
        links = [("derived_from", m.id) for m in fresh[-50:]]
        self.write(item, links=links, replaces=[(old.id, "refine")] if old else [], note={"op": "profile"})
        st.add("profile_updated")
        st.add("profile_tokens", self.model.count_tokens(text))
        st.example(_short(text, 120))
        feed.commit()
        return None

    def recent_user_messages(self) -> list[Memory]:
        q = (
            f"SELECT {COLUMNS} FROM memories WHERE space = ? AND kind = 'episode' AND state = 'active' "
            "AND text LIKE 'user: %' ORDER BY coalesce(event_at, recorded_at) DESC LIMIT ?"
        )
        return [row_to_memory(r) for r in self.cat.db.execute(q, (self.space, PROFILE_MESSAGES))][::-1]

    # -- link ------------------------------------------------------------------------------------
    def _link(self, st: _Step) -> None:
        cfg = self.cfg
        feed = _Feed(self, "link")
        kinds = set(cfg.link_kinds)
        changed = feed.items(sorted(kinds))
        for b in range(0, len(changed), cfg.batch_size):
            batch = changed[b : b + cfg.batch_size]
            vecs = {
                r[0]: np.frombuffer(r[1], dtype=np.float32)
                for r in self.cat.db.execute(
                    f"SELECT id, embedding FROM memories WHERE id IN ({','.join('?' * len(batch))})", [m.id for _, m in batch]
                )
            }
            pairs: list[tuple[str, str]] = []
            for _, m in batch:
                st.add("checked")
                if m.id in vecs:
                    pairs += [(min(m.id, o.id), max(m.id, o.id)) for o in self.neighbours(m, vecs[m.id], kinds)]
            pairs = list(dict.fromkeys(pairs))
            if self.dry_run:
                new = [
                    p
                    for p in pairs
                    if not self.cat.db.execute("SELECT 1 FROM links WHERE src = ? AND dst = ? AND kind = 'related'", p).fetchone()
                ]
                st.add("links", len(new))
                continue
            now, added = time.time(), 0
            with self.store.write_lock(), self.cat.transaction() as db:
                for src, dst in pairs:  # related is symmetric: stored once, lower id first
                    added += db.execute(
                        "INSERT OR IGNORE INTO links(src, dst, kind, at) VALUES(?, ?, 'related', ?)", (src, dst, now)
                    ).rowcount
                feed.save(db, batch[-1][0])  # with the links it stands for: an exact resume
            st.add("links", added)
        feed.commit()

    def neighbours(self, m: Memory, vec: Matrix, kinds: set[str]) -> list[Memory]:
        cfg = self.cfg
        hits = self.store.index.query(self.space, [float(x) for x in vec], cfg.link_max * 4 + 1)
        found = self.cat.by_ids(h.id for h in hits)
        tags = {t for t in m.tags if t not in STRUCTURAL_TAGS and not _DATE_TAG.fullmatch(t)}
        out: list[Memory] = []
        for h in hits:
            o = found.get(h.id)
            if o is None or o.id == m.id or o.state != "active" or not o.current or o.kind.value not in kinds:
                continue
            if o.source == m.source and o.position is not None and m.position is not None:
                continue  # parts of one document or conversation: already ordered there
            if h.similarity >= cfg.link_similarity or (h.similarity >= cfg.related_similarity and tags & set(o.tags)):
                out.append(o)
            if len(out) >= cfg.link_max:
                break
        return out

    # -- decay -----------------------------------------------------------------------------------
    def _decay(self, st: _Step) -> None:
        from memcli.services import retention

        report = retention.refresh(self.ctx, space=self.space, now=self.now, dry_run=self.dry_run)
        st.counts.update(report.counts)
        for e in report.examples[:EXAMPLES]:
            st.example(e)


@dataclass(frozen=True)
class _Pool:
    mems: list[Memory]
    vecs: Matrix  # one L2-normalised row per memory: dot product = cosine similarity
    row: dict[str, int] = field(default_factory=dict)
    same: dict[str, set[int]] = field(default_factory=dict)  # normalised text -> rows

    def __post_init__(self) -> None:
        self.row.update({m.id: i for i, m in enumerate(self.mems)})
        for i, m in enumerate(self.mems):
            self.same.setdefault(_norm(m.text), set()).add(i)


def _newest_profile(run: _Run) -> Memory | None:
    """The profile chat uses (services/profile.py picks the same one)."""
    q = (
        f"SELECT {COLUMNS} FROM memories WHERE space = ? AND kind = 'profile' AND state = 'active' AND retired_at IS NULL "
        "ORDER BY coalesce(event_at, recorded_at) DESC, rowid DESC LIMIT 1"
    )
    r = run.cat.db.execute(q, (run.space,)).fetchone()
    return None if r is None else row_to_memory(r)


# -- intents: multi-transaction changes that a killed run leaves for the next one --------------------
def _complete(ctx: Context, intent: dict[str, Any], mid: str) -> None:
    """Link the new memory ``mid`` and retire/trash what it replaces; every part is idempotent."""
    store, cat = ctx.store, ctx.store.catalog
    now = time.time()
    with store.write_lock():
        with cat.transaction() as db:
            for kind, dst in intent["links"]:
                db.execute("INSERT OR IGNORE INTO links(src, dst, kind, at) VALUES(?, ?, ?, ?)", (mid, dst, kind, now))
            note = intent.get("note", {})
            if note.get("op") == "summarise":  # how many it summarised: tells a later purge of one of them
                cat.audit(db, now, [(mid, "summarise", {"period": note.get("period"), "sources": note.get("sources", 0)})])
        old = cat.by_ids(old_id for old_id, _ in intent["replaces"])
        for old_id, how in intent["replaces"]:
            m = old.get(old_id)
            if m is None or m.id == mid or m.state != "active":
                continue
            if how == "trash":
                store.trash([m], reason="replaced: what it summarised was forgotten")
            elif m.current:
                store.retire(m, mid, valid_until=None, reason="refine")
        with cat.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (INTENT,))


def _recover(ctx: Context) -> int:
    """Finish the change a killed run left between its steps (or drop it if it never got written)."""
    cat = ctx.store.catalog
    raw = cat.meta(INTENT)
    if raw is None:
        return 0
    intent = json.loads(raw)
    # Only a memory written after the intent is its result (an older one may share the text).
    row = cat.db.execute(
        "SELECT id FROM memories WHERE space = ? AND content_hash = ? AND state = 'active' AND recorded_at >= ? "
        "ORDER BY rowid DESC LIMIT 1",
        (intent["space"], intent["hash"], float(intent["at"]) - 1.0),
    ).fetchone()
    if row is None:  # it died before the memory was written: the step will do it again
        with cat.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (INTENT,))
        return 0
    _complete(ctx, intent, row[0])
    return 1


# -- pure helpers ----------------------------------------------------------------------------------
_WORD = re.compile(r"\w+")
_DATE_TAG = re.compile(r"\d{4}-(\d{2}-\d{2}|W\d{2})")


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _names(text: str) -> set[str]:
    """Capitalised words not at the start of a sentence: names, places (lower-cased)."""
    out = set()
    for m in _WORD.finditer(text):
        before = text[: m.start()].rstrip()
        if m.group()[0].isupper() and before and before[-1] not in ".!?:;\"'(":
            out.add(m.group().lower())
    return out


def same_text(a: str, b: str, jaccard: float) -> bool:
    """Do two texts say the same thing in (nearly) the same words? Same words after normalising, or a
    word-set Jaccard of at least ``jaccard`` where no differing word is a number or a name ("gate 12"
    vs "gate 14", "Bergen" vs "Oslo" are different facts however close their embeddings)."""
    if _norm(a) == _norm(b):
        return True
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not wa or not wb or len(wa & wb) / len(wa | wb) < jaccard:
        return False
    diff = wa ^ wb
    return not any(any(c.isdigit() for c in w) for w in diff) and not diff & (_names(a) | _names(b))


def render_profile(answer: dict[str, Any], budget: int, count: Callable[[str], int]) -> tuple[str, int]:
    """The profile text from the model's structured answer, cut to ``budget`` tokens by dropping whole
    lines from the end (preferences first, then facts; the style line stays). Returns (text, lines cut)."""
    style = answer["style"]
    notes = " ".join(style["notes"].split())
    style_line = prompts.PROFILE_STYLE.format(
        formality=style["formality"], length=style["length"], humour=style["humour"], notes=f" {notes}" if notes else ""
    )
    facts = [f"- {' '.join(f.split())}" for f in answer["facts"]]
    prefs = [f"- {' '.join(p.split())}" for p in answer["preferences"]]

    def text() -> str:
        return "\n".join([*facts, *([prompts.PROFILE_PREFERENCES, *prefs] if prefs else []), style_line])

    cut = 0
    while count(text()) > budget and (prefs or facts):
        (prefs or facts).pop()
        cut += 1
    out = text()
    while count(out) > budget and " " in out:  # only the style line is left, and it is too long
        out = out.rsplit(" ", 1)[0]
    return out, cut


def _fit_lines(lines: list[str], budget: int, count: Callable[[str], int], *, newest_last: bool) -> str:
    """As many lines as fit in ``budget`` tokens, keeping the newest (the end of the list)."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines) if newest_last else lines:
        n = count(line) + 1
        if used + n > budget:
            break
        kept.append(line)
        used += n
    return "\n".join(reversed(kept) if newest_last else kept)


def _start(m: Memory) -> float:
    """When a memory became true: valid_from, else its event time, else when it was learned."""
    return (m.valid_from or m.event_at or m.recorded_at).timestamp()


def _local_day(t: float) -> date:
    return datetime.fromtimestamp(t).astimezone().date()


def _day_start(d: date) -> float:
    return datetime(d.year, d.month, d.day).astimezone().timestamp()


def _day(t: float) -> str:
    return _local_day(t).isoformat()


def _short(text: str, width: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"
