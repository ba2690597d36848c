"""Server mode: the Chroma server is the source of truth, the local catalog a cache of it.

Design (README, "Sharing one memory across machines"):

- Every change memcli makes to its catalog is a SQLite transaction (``Catalog.transaction``). In server
  mode the catalog's connection records each write statement of a transaction with its parameters
  (``RecordingConnection``); before the local COMMIT the statements are appended to the server's change
  log (one record per transaction, split in parts when large). If the server does not take them, the
  local transaction is rolled back and the command fails naming the URL: nothing is accepted that the
  server does not have, so there is no local outbox that could be lost.
- The log is split into segments, collections ``memcli.changelog.START`` (START: the creating writer's
  clock in ms; ``memcli.changelog`` itself, on stores written before segments, is the oldest), because
  Chroma's server makes every write to a collection slower as the collection grows. Appends go to the
  newest segment, all parts of a transaction to the same one; once it holds SEGMENT_BYTES the writer
  starts the next. Readers cover every segment; the recent window reads only the newest segment that
  started before it and the newer ones.
- Vectors go to the server's per-space collections directly (the index, as in embedded mode).
- At the start of every command that opens the store, the cache pulls the log records it has not
  applied (those newer than its last position minus a window for clock skew, plus — when the server's
  record count says something is still missing — every record it lacks) and replays them in
  transaction-id order. The count check costs one request per segment still open to writers: the
  count of a segment sealed for longer than the skew window is kept in the cache (``replica_sealed``).
  Statements are deterministic (no now(), no random()), so replaying the same log in the same order
  gives every machine the same catalog: the same memories, keyword index, audit history, links and
  counters, hence the same recall results.
- Transaction ids start with the writer's clock (nanoseconds). If a record arrives that sorts *before*
  one this cache already applied (two machines wrote at once, or a clock is off), the cache is
  rebuilt: emptied and replayed from the whole log, so it converges to the log's order. A cache that
  is missing, or holds records the server no longer has (another server at that URL), is rebuilt too.
  Syncing and rebuilding are said on stderr.
- Purge removes the text from the server too: the memory's vector, and every log record that quotes
  the text (the add itself, neighbours' keys, a quarantined LLM output) is rewritten with a placeholder.
  The placeholder replays to the same end state (the purge's own statements delete the row), so a
  rebuilt cache still matches. Chroma's own files may keep an old copy until Chroma compacts them.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memcli.errors import store_error
from memcli.store import schema
from memcli.store.recording import Stmt, dec, run
from memcli.store.schema import chunks, marks

if TYPE_CHECKING:
    from memcli.backends.chroma_server import ChangeLog, LogRecord, Segment
    from memcli.records import Memory
    from memcli.store.catalog import Catalog

INSERT_MEMORIES_RE = re.compile(r"\s*INSERT\s+INTO\s+memories\s*\(([^)]*)\)", re.IGNORECASE)
SKEW_MS = 10 * 60 * 1000  # re-read this much of the log before the last position (clocks, slow writers)
STALE_MS = 60 * 60 * 1000  # a transaction still missing parts after this was abandoned by its writer
PART_BYTES = 256 * 1024  # the largest log record body

LOCAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS replica_applied(id TEXT PRIMARY KEY, tx TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replica_state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replica_sealed(segment TEXT PRIMARY KEY, records INTEGER NOT NULL);
"""


def _parts(stmts: list[Stmt]) -> list[str]:
    """Split a transaction's statements into JSON bodies of at most about PART_BYTES."""
    bodies: list[str] = []
    cur: list[Stmt] = []
    size = 0

    def flush() -> None:
        nonlocal cur, size
        if cur:
            bodies.append(json.dumps({"stmts": cur}, ensure_ascii=False))
        cur, size = [], 0

    for sql, params, many in stmts:
        pieces: list[Stmt] = [[sql, params, many]]
        if many:
            pieces, csize = [], 0
            chunk: list[Any] = []
            for row in params:
                n = len(json.dumps(row, ensure_ascii=False))
                if chunk and csize + n > PART_BYTES:
                    pieces.append([sql, chunk, 1])
                    chunk, csize = [], 0
                chunk.append(row)
                csize += n
            pieces.append([sql, chunk, 1])
        for p in pieces:
            n = len(json.dumps(p, ensure_ascii=False))
            if cur and size + n > PART_BYTES:
                flush()
            cur.append(p)
            size += n
    flush()
    return bodies


class Journal:
    """The link between one cache catalog and the server's change log."""

    def __init__(self, log: ChangeLog, where: str, say: Callable[[str], None]) -> None:
        self.log = log
        self.where = where
        self.say = say
        self.device = secrets.token_hex(4)
        self._seq = 0

    # -- writing ---------------------------------------------------------------------------------
    def publish(self, db: sqlite3.Connection, stmts: list[Stmt]) -> None:
        """Append one local transaction's statements to the server log (called before its COMMIT;
        raising here rolls it back). Records the parts as applied in the same local transaction."""
        from memcli.backends.chroma_server import LogRecord

        self._seq += 1
        # A transaction sorts after every one this cache has applied, whatever this machine's clock says
        # (a Lamport clock): only truly concurrent writes can then arrive out of order elsewhere.
        seen = _state(db, "max_tx")
        now_ns = max(time.time_ns(), int(seen.split("-")[0]) + 1 if seen else 0)
        tx = f"{now_ns:020d}-{self.device}-{self._seq:06d}"
        stmts = self._externalise_embeddings(stmts)
        bodies = _parts(stmts)
        records = [
            LogRecord(f"{tx}.{i}", tx, i, len(bodies), now_ns // 1_000_000, b, schema.SCHEMA_VERSION) for i, b in enumerate(bodies)
        ]
        self.log.append(records)
        _mark_applied(db, [(r.id, tx) for r in records], tx, now_ns // 1_000_000)

    def _externalise_embeddings(self, stmts: list[Stmt]) -> list[Stmt]:
        """Rows inserted into ``memories`` carry their embedding: store it in the server's embeddings
        collection (before the log record that refers to it) and log a reference {"emb": id, "dim": n}."""
        import numpy as np

        out: list[Stmt] = []
        for sql, params, many in stmts:
            m = INSERT_MEMORIES_RE.match(sql)
            cols = [c.strip() for c in m.group(1).split(",")] if m else []
            if "embedding" not in cols or "id" not in cols:
                out.append([sql, params, many])
                continue
            ie, ii = cols.index("embedding"), cols.index("id")
            rows = [list(r) for r in (params if many else [params])]
            by_dim: dict[int, tuple[list[str], list[Any]]] = {}
            for r in rows:
                blob = dec(r[ie])
                if not blob:
                    continue
                v = np.frombuffer(blob, dtype=np.float32)
                ids, vecs = by_dim.setdefault(len(v), ([], []))
                ids.append(r[ii])
                vecs.append(v.tolist())
                r[ie] = {"emb": r[ii], "dim": len(v)}
            for dim, (ids, vecs) in by_dim.items():
                self.log.put_embeddings(dim, ids, vecs)
            out.append([sql, rows if many else rows[0], many])
        return out

    def _internalise_embeddings(self, stmts: list[Stmt]) -> list[Stmt]:
        """The inverse, for replay: references become the stored embeddings (b"" if purged since)."""
        import numpy as np

        wanted: dict[int, list[str]] = {}
        for _, params, many in stmts:
            for r in params if many else [params]:
                for v in r:
                    if isinstance(v, dict) and "emb" in v:
                        wanted.setdefault(int(v["dim"]), []).append(str(v["emb"]))
        if not wanted:
            return stmts
        found: dict[str, bytes] = {}
        for dim, ids in wanted.items():
            for k, vec in self.log.get_embeddings(dim, ids).items():
                found[k] = np.asarray(vec, dtype=np.float32).tobytes()

        def swap(v: Any) -> Any:
            if isinstance(v, dict) and "emb" in v:
                return {"b64": base64.b64encode(found.get(str(v["emb"]), b"")).decode("ascii")}
            return v

        return [
            [sql, [[swap(v) for v in r] for r in params] if many else [swap(v) for v in params], many]
            for sql, params, many in stmts
        ]

    # -- reading ---------------------------------------------------------------------------------
    def sync(self, catalog: Catalog) -> Catalog:
        """Bring ``catalog`` up to the server's log; returns it, or a rebuilt one."""
        db = catalog.db
        for stmt in LOCAL_SCHEMA.split(";"):
            if stmt.strip():
                db.execute(stmt)
        segments = self.log.segments()
        server_n = self._server_count(db, segments)
        local_n = int(db.execute("SELECT count(*) FROM replica_applied").fetchone()[0])
        if server_n < local_n:
            return self.rebuild(catalog, "it holds changes this server does not have")
        if not local_n and server_n:
            return self.rebuild(catalog, "no local cache yet", quiet_reason=True)
        # Ids and stamps first (cheap), bodies only of what this cache has not applied.
        last_at = int(_state(db, "last_at") or 0)
        recent = self.log.since(max(0, last_at - SKEW_MS), bodies=False, segments=segments) if server_n > 0 else []
        where = {r.id: r.segment for r in recent}
        new_ids = _unapplied(db, list(where))
        if server_n > local_n + len(new_ids):  # something older than the window is missing: a full diff
            where = self.log.all_ids(segments)
            new_ids = _unapplied(db, list(where))
        fresh = self.log.by_ids({i: where[i] for i in new_ids}) if new_ids else []
        txs = self._complete(db, fresh)
        if not txs:
            return catalog
        max_tx = _state(db, "max_tx") or ""
        if min(txs) < max_tx:
            return self.rebuild(catalog, "changes from another machine arrived out of order")
        self.say(f"syncing {len(txs)} change(s) from {self.where}")
        try:
            self._apply(catalog, txs)
        except sqlite3.Error:
            return self.rebuild(catalog, "the cache did not accept the server's changes")
        return catalog

    def _server_count(self, db: sqlite3.Connection, segments: Sequence[Segment]) -> int:
        """The server's record count, exact but cheap: a segment sealed for longer than SKEW_MS (a newer
        one started that long ago) takes no more appends, so its count, once read, is kept here; only
        the others are counted on the server. (Purge rewrites records, it never removes them.)"""
        sealed = _sealed_long_ago(segments)
        known = {str(k): int(n) for k, n in sqlite3.Connection.execute(db, "SELECT segment, records FROM replica_sealed")}
        cached = [s.name for s in segments if s.name in sealed and s.name in known]
        live = self.log.counts([s.name for s in segments if s.name not in cached])
        _keep_sealed_counts(db, {name: n for name, n in live.items() if name in sealed})
        return sum(known[name] for name in cached) + sum(live.values())

    def counts(self, catalog: Catalog) -> tuple[int, int]:
        """(records this cache has applied, records on the server), for `memcli doctor`."""
        local = int(sqlite3.Connection.execute(catalog.db, "SELECT count(*) FROM replica_applied").fetchone()[0])
        return local, self.log.count()

    def _complete(self, db: sqlite3.Connection, records: list[LogRecord]) -> dict[str, list[LogRecord]]:
        newest = max((r.schema for r in records), default=0)
        if newest > schema.SCHEMA_VERSION:
            raise store_error(
                f"the store on {self.where} holds changes written by a newer memcli (catalog schema {newest}; "
                f"this one knows {schema.SCHEMA_VERSION})",
                hint="Upgrade memcli on this machine (every machine sharing a server should run the same version).",
            )
        by_tx: dict[str, list[LogRecord]] = {}
        for r in records:
            by_tx.setdefault(r.tx, []).append(r)
        now_ms = time.time_ns() // 1_000_000
        out: dict[str, list[LogRecord]] = {}
        abandoned: list[tuple[str, str]] = []
        for tx, parts in by_tx.items():
            if len({p.part for p in parts}) == parts[0].parts:
                out[tx] = sorted(parts, key=lambda p: p.part)
            elif parts[0].at_ms < now_ms - STALE_MS:
                abandoned += [(p.id, tx) for p in parts]  # its writer died mid-append: never applied anywhere
        if abandoned:
            with _local_tx(db):
                db.executemany("INSERT OR IGNORE INTO replica_applied(id, tx) VALUES(?, ?)", abandoned)
        return out

    def _apply(self, catalog: Catalog, txs: dict[str, list[LogRecord]]) -> None:
        purged = False
        for tx in sorted(txs):
            parts = txs[tx]
            stmts = self._internalise_embeddings([s for p in parts for s in json.loads(p.body)["stmts"]])
            with catalog.transaction(record=False) as db:
                for stmt in stmts:
                    purged = purged or "VALUES('optimize')" in stmt[0]
                    run(db, stmt)
                _mark_applied(db, [(p.id, tx) for p in parts], tx, max(p.at_ms for p in parts))
        if purged:  # a purge on another machine: no old page of this file keeps the text either
            catalog.db.execute("VACUUM")
            catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def rebuild(self, catalog: Catalog, reason: str, *, quiet_reason: bool = False) -> Catalog:
        from memcli.store.catalog import Catalog

        path = catalog.path
        catalog.close()
        for p in path.parent.glob(path.name + "*"):
            p.unlink()
        fresh = Catalog(path, journal=self)
        for stmt in LOCAL_SCHEMA.split(";"):
            if stmt.strip():
                fresh.db.execute(stmt)
        segments = self.log.segments()
        records = self.log.since(0, segments=segments)
        held = Counter(r.segment for r in records)
        _keep_sealed_counts(fresh.db, {s.name: held[s.name] for s in segments if s.name in _sealed_long_ago(segments)})
        txs = self._complete(fresh.db, records)
        self.say(f"rebuilding the local cache from {self.where} ({len(txs)} change(s))" + ("" if quiet_reason else f": {reason}"))
        try:
            self._apply(fresh, txs)
        except sqlite3.Error as e:
            raise store_error(
                f"the change log on {self.where} does not replay cleanly: {e}",
                hint="Report this; `memcli migrate --from URL` into an embedded store keeps a copy of what can be read.",
            )
        return fresh

    # -- purge -----------------------------------------------------------------------------------
    def scrub(self, memories: Sequence[Memory]) -> None:
        """Rewrite every log record that quotes a purged memory's text (see the module docstring)."""
        for m in memories:
            if not m.text:
                continue
            token = f"[purged {m.id}]"
            changed = []
            for rec in self.log.containing(m.text):
                body = json.loads(rec.body)
                body["stmts"] = [_scrub_stmt(s, m, token) for s in body["stmts"]]
                new = json.dumps(body, ensure_ascii=False)
                if new != rec.body:
                    changed.append(_with_body(rec, new))
            self.log.rewrite(changed)
        self.log.delete_embeddings([m.id for m in memories])


def _with_body(rec: LogRecord, body: str) -> LogRecord:
    from dataclasses import replace

    return replace(rec, body=body)


def _scrub_stmt(stmt: Stmt, m: Memory, token: str) -> Stmt:
    sql, params, many = stmt
    rows = params if many else [params]
    cols_m = INSERT_MEMORIES_RE.match(sql)
    out = []
    for row in rows:
        if cols_m is not None:
            cols = [c.strip() for c in cols_m.group(1).split(",")]
            d = dict(zip(cols, range(len(row))))
            row = list(row)
            if row[d["id"]] == m.id:
                row[d["text"]] = token
                if "keys" in d:
                    row[d["keys"]] = token
                if "embedding" in d:
                    row[d["embedding"]] = {"b64": ""}
            elif "keys" in d and "source" in d and row[d["source"]] == m.source and isinstance(row[d["keys"]], str):
                row[d["keys"]] = row[d["keys"]].replace(m.text, token)
        else:
            quoting = sql.lstrip().upper().startswith(("INSERT INTO QUARANTINE", "INSERT INTO AUDIT"))
            row = [token if v == m.text else (v.replace(m.text, token) if quoting and isinstance(v, str) else v) for v in row]
        out.append(row)
    return [sql, out if many else out[0], many]


def _sealed_long_ago(segments: Sequence[Segment]) -> set[str]:
    """Segments a newer one replaced more than SKEW_MS ago (by the starts in their names): no writer is
    still appending to them, so their record counts no longer change."""
    now_ms = time.time_ns() // 1_000_000
    return {old.name for old, new in pairwise(segments) if new.start_ms < now_ms - SKEW_MS}


def _keep_sealed_counts(db: sqlite3.Connection, counts: dict[str, int]) -> None:
    if counts:
        q = "INSERT OR REPLACE INTO replica_sealed(segment, records) VALUES(?, ?)"
        sqlite3.Connection.executemany(db, q, list(counts.items()))


def _unapplied(db: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
    out: list[str] = []
    for part in chunks(ids):
        q = f"SELECT id FROM replica_applied WHERE id IN ({marks(len(part))})"
        have = {r[0] for r in sqlite3.Connection.execute(db, q, part)}
        out += [x for x in part if x not in have]
    return out


def _state(db: sqlite3.Connection, key: str) -> str | None:
    r = sqlite3.Connection.execute(db, "SELECT value FROM replica_state WHERE key = ?", (key,)).fetchone()
    return None if r is None else str(r[0])


def _mark_applied(db: sqlite3.Connection, ids: list[tuple[str, str]], tx: str, at_ms: int) -> None:
    """Unrecorded bookkeeping (sqlite3.Connection's own methods bypass the recording)."""
    ex = sqlite3.Connection.execute
    sqlite3.Connection.executemany(db, "INSERT OR IGNORE INTO replica_applied(id, tx) VALUES(?, ?)", ids)
    upsert = "INSERT INTO replica_state(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
    if tx > (_state(db, "max_tx") or ""):
        ex(db, upsert, ("max_tx", tx))
    if at_ms > int(_state(db, "last_at") or 0):
        ex(db, upsert, ("last_at", str(at_ms)))


class _local_tx:  # used like a function
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        sqlite3.Connection.execute(self.db, "BEGIN IMMEDIATE")

    def __exit__(self, et: object, *_: object) -> None:
        sqlite3.Connection.execute(self.db, "ROLLBACK" if et else "COMMIT")


def cache_dir(data_dir: Path, url: str, tenant: str, database: str) -> Path:
    import hashlib

    key = hashlib.sha256(f"{url.rstrip('/')}|{tenant}|{database}".encode()).hexdigest()[:16]
    return data_dir / "server-cache" / key
