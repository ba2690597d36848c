"""The SQLite catalog: memcli's source of truth.

It holds every memory's text, metadata *and* embedding, the keyword index (FTS5) and the audit log.
The vector index (Chroma) is derived from it and can be rebuilt from it at any time; that is why a
write is committed here first and replayed into the index until the index confirms it (``vec_state``).
SQLite gives us real transactions and crash safety (WAL); Chroma's embedded files do not promise that.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memcli.errors import store_error
from memcli.records import Memory
from memcli.store.health import HealthChecks
from memcli.store.inspect import Inspection
from memcli.store.keyword import KeywordSearch
from memcli.store.queries import DomainQueries
from memcli.store.recording import ChangeListener, RecordingConnection
from memcli.store.schema import ADDED_COLUMNS, COLUMNS, SCHEMA, SCHEMA_VERSION, WHEN, Filter, chunks, marks, row_to_memory


class Catalog(KeywordSearch, DomainQueries, HealthChecks, Inspection):
    def __init__(self, path: Path, journal: ChangeListener | None = None) -> None:
        """``journal``: a listener told of every transaction before it commits (server mode: the
        server's change log, memcli/store/replica.py)."""
        self.path = path
        self.journal = journal
        self._tx_lock = threading.RLock()
        try:
            if not path.exists():
                # Owner-only from the first byte; SQLite gives its -wal/-shm files the same mode.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db: RecordingConnection = sqlite3.connect(
                path, isolation_level=None, timeout=30.0, check_same_thread=False, factory=RecordingConnection
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Freed pages are zeroed: forgotten text does not linger in the file's free space.
            self.db.execute("PRAGMA secure_delete=ON")
            self.db.execute("PRAGMA foreign_keys=ON")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise store_error(
                    f"{path} was written by a newer memcli (schema {version}, this one knows {SCHEMA_VERSION})",
                    hint="Upgrade memcli.",
                )
            if version < SCHEMA_VERSION:
                with self.transaction():
                    have = {r[1] for r in self.db.execute("PRAGMA table_info(memories)")}
                    if have:  # an older store: add the new columns before the schema's indexes use them
                        for name, typ in ADDED_COLUMNS:
                            if name not in have:
                                self.db.execute(f"ALTER TABLE memories ADD COLUMN {name} {typ}")
                    for stmt in re.split(r";\s*\n", SCHEMA):
                        if stmt.strip():
                            self.db.execute(stmt)
                    self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise store_error(
                f"cannot open the memory catalog {path}: {e}",
                hint="Check that the data directory is readable and writable by you (`memcli config path`) "
                "and that the disk is not full.",
            )

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self, *, record: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE takes the write lock up front (no deadlocking upgrades).
        The connection is shared by this process's threads (chat writes from a background thread), so
        a transaction also holds a thread lock: one connection cannot run two transactions at once.

        In server mode the transaction's write statements are published to the server before COMMIT
        (``record=False``: replaying the server's own changes)."""
        journal = self.journal if record else None
        with self._tx_lock:
            self.db.execute("BEGIN IMMEDIATE")
            if journal is not None:
                self.db.recording = []
            try:
                yield self.db
                if journal is not None:
                    stmts, self.db.recording = self.db.recording or [], None
                    if stmts:
                        journal.publish(self.db, stmts)
            except BaseException:
                self.db.recording = None
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")

    # -- meta ------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value)
        )

    # -- reads -----------------------------------------------------------------------------------
    def by_ids(self, ids: Iterable[str]) -> dict[str, Memory]:
        return {r[0]: row_to_memory(r) for r in self._rows_by_id(COLUMNS, ids)}

    def _rows_by_id(self, columns: str, ids: Iterable[str]) -> Iterator[Any]:
        """``SELECT columns`` of the memories with these ids, 500 ids a query (SQLite's variable limit)."""
        for part in chunks(list(ids)):
            yield from self.db.execute(f"SELECT {columns} FROM memories WHERE id IN ({marks(len(part))})", part)

    def resolve_id(self, prefix: str) -> list[Memory]:
        """Memories whose id starts with ``prefix`` (ids are shown shortened)."""
        if not re.fullmatch(r"[0-9a-f]{4,32}", prefix):
            return []
        q = f"SELECT {COLUMNS} FROM memories WHERE id >= ? AND id < ? LIMIT 2"
        return [row_to_memory(r) for r in self.db.execute(q, (prefix, prefix + "g"))]

    def by_hash(self, space: str, content_hash: str) -> Memory | None:
        # "+state": keeps the planner off memories_kind (space, state, ...), which it chose without stats and
        # which scans the whole space: 60 ms per add at 30k memories instead of 0.1 ms via memories_hash.
        q = f"SELECT {COLUMNS} FROM memories WHERE space = ? AND content_hash = ? AND +state = 'active' LIMIT 1"
        r = self.db.execute(q, (space, content_hash)).fetchone()
        return None if r is None else row_to_memory(r)

    def page(self, f: Filter, limit: int, offset: int) -> tuple[list[Memory], int]:
        where, args = f.sql()
        total = self.db.execute(f"SELECT count(*) FROM memories m WHERE {where}", args).fetchone()[0]
        q = (
            f"SELECT {', '.join('m.' + c.strip() for c in COLUMNS.split(','))} FROM memories m WHERE {where} "
            "ORDER BY coalesce(m.event_at, m.recorded_at) DESC, m.rowid DESC LIMIT ? OFFSET ?"  # WHEN, qualified
        )
        rows = self.db.execute(q, [*args, limit, offset]).fetchall()
        return [row_to_memory(r) for r in rows], int(total)

    def embeddings(self, ids: Iterable[str]) -> dict[str, bytes]:
        """The stored embedding (float32 bytes) of each of ``ids`` that exists."""
        return {r[0]: r[1] for r in self._rows_by_id("id, embedding", ids)}

    def filtered_ids(self, f: Filter, cap: int) -> list[str] | None:
        """Ids of active memories that pass ``f``'s kind/time filter, or None when more than ``cap``
        do (then a filtered vector query is cheaper than passing the ids)."""
        where, args = f.sql()
        rows = self.db.execute(f"SELECT m.id FROM memories m WHERE {where} LIMIT ?", [*args, cap + 1]).fetchall()
        return None if len(rows) > cap else [r[0] for r in rows]

    def pending(self) -> list[tuple[str, str, str, str, float, bytes]]:
        """Rows whose vector-index write was not confirmed: (id, space, vec_state, kind, when, embedding)."""
        q = (
            f"SELECT id, space, vec_state, kind, {WHEN}, embedding FROM memories "
            "WHERE vec_state IN ('pending_add', 'pending_remove')"
        )
        return list(self.db.execute(q))

    def tombstones(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.db.execute("SELECT id, space FROM tombstones")]

    def source_hash(self, space: str, source: str) -> str | None:
        r = self.db.execute("SELECT hash FROM sources WHERE space = ? AND source = ?", (space, source)).fetchone()
        return None if r is None else str(r[0])

    def by_source_prefix(self, name: str) -> list[Memory]:
        """Memories whose source is ``name`` or ``name#PART`` (a session of a conversation file)."""
        q = f"SELECT {COLUMNS} FROM memories WHERE source = ? OR (source > ? AND source < ?) ORDER BY source, position"
        return [row_to_memory(r) for r in self.db.execute(q, (name, name + "#", name + "$"))]

    def neighbours(self, source: str, position: int, n: int) -> list[Memory]:
        """Active memories within ``n`` positions of ``position`` in the same source, in order."""
        q = f"SELECT {COLUMNS} FROM memories WHERE source = ? AND position BETWEEN ? AND ? AND state = 'active' ORDER BY position"
        return [row_to_memory(r) for r in self.db.execute(q, (source, position - n, position + n))]

    def source_names(self, space: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT source FROM sources WHERE space = ? ORDER BY source", (space,))]

    def spaces(self) -> dict[str, int]:
        q = "SELECT space, count(*) FROM memories WHERE state = 'active' GROUP BY space ORDER BY space"
        return {r[0]: int(r[1]) for r in self.db.execute(q)}

    # -- writes (callers hold a transaction) ------------------------------------------------------
    def fts_add(self, db: sqlite3.Connection, ids: Sequence[str]) -> None:
        for part in chunks(ids):
            db.execute(
                f"INSERT INTO memory_fts(rowid, text, keys) SELECT rowid, text, keys FROM memories WHERE id IN ({marks(len(part))})",
                part,
            )

    def fts_remove(self, db: sqlite3.Connection, ids: Sequence[str]) -> None:
        # External-content FTS5 needs the indexed values to delete them: read them before they change.
        for part in chunks(ids):
            db.execute(
                "INSERT INTO memory_fts(memory_fts, rowid, text, keys) SELECT 'delete', rowid, text, keys "
                f"FROM memories WHERE id IN ({marks(len(part))})",
                part,
            )

    def audit(self, db: sqlite3.Connection, at: float, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        db.executemany(
            "INSERT INTO audit(at, memory_id, action, detail) VALUES(?, ?, ?, ?)",
            [(at, mid, action, json.dumps(detail, ensure_ascii=False)) for mid, action, detail in rows],
        )

    def set_vec_state(self, db: sqlite3.Connection, ids: Sequence[str], state: str) -> None:
        for part in chunks(ids):
            db.execute(f"UPDATE memories SET vec_state = ? WHERE id IN ({marks(len(part))})", [state, *part])

    def add_links(self, db: sqlite3.Connection, rows: Iterable[tuple[str, str, str, float]]) -> int:
        """Insert (src, dst, kind, at) links that do not exist yet. Returns how many were new."""
        cur = db.executemany("INSERT OR IGNORE INTO links(src, dst, kind, at) VALUES(?, ?, ?, ?)", list(rows))
        return max(cur.rowcount, 0)

    def links(self, memory_id: str) -> list[tuple[str, str, str]]:
        """(src, kind, dst) of every link touching ``memory_id``."""
        q = "SELECT src, kind, dst FROM links WHERE src = ? UNION SELECT src, kind, dst FROM links WHERE dst = ?"
        return [(r[0], r[1], r[2]) for r in self.db.execute(q, (memory_id, memory_id))]

    def quarantined(self, limit: int = 50) -> list[tuple[int, float, str, str, str, str]]:
        """Newest first: (seq, at, operation, source, error, raw)."""
        q = "SELECT seq, at, operation, source, error, raw FROM quarantine ORDER BY seq DESC LIMIT ?"
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in self.db.execute(q, (limit,))]

    def history(self, memory_id: str) -> list[tuple[float, str, dict[str, Any]]]:
        q = "SELECT at, action, detail FROM audit WHERE memory_id = ? ORDER BY seq"
        return [(r[0], r[1], json.loads(r[2])) for r in self.db.execute(q, (memory_id,))]

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
