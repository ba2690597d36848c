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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from memcli.errors import store_error
from memcli.records import Kind, Memory, from_epoch
from memcli.replica import RecordingConnection

if TYPE_CHECKING:
    from memcli.replica import Journal

# 2: indexes for filtered recall; 3: temporal truth (valid_from/valid_until/retired_at/superseded_by),
# links between memories, quarantined LLM outputs. Older stores are upgraded in place on open.
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memories(
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    space TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    position INTEGER,
    recorded_at REAL NOT NULL,
    event_at REAL,
    tags TEXT NOT NULL DEFAULT '[]',
    pinned INTEGER NOT NULL DEFAULT 0,
    importance REAL NOT NULL DEFAULT 0.5,
    access_count INTEGER NOT NULL DEFAULT 0,
    last_access REAL,
    content_hash TEXT NOT NULL,
    embed_model TEXT NOT NULL,
    embedding BLOB NOT NULL,
    keys TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'trashed')),
    trashed_at REAL,
    -- Temporal truth (as Zep/Graphiti): when the fact became and stopped being true in the world, and
    -- when memcli retired it (contradicted or refined: never deleted); superseded_by names the successor.
    valid_from REAL,
    valid_until REAL,
    retired_at REAL,
    superseded_by TEXT,
    -- where the vector index stands for this row: the store replays anything 'pending_*'.
    vec_state TEXT NOT NULL CHECK (vec_state IN ('pending_add', 'indexed', 'pending_remove', 'absent'))
);
CREATE INDEX IF NOT EXISTS memories_space_time ON memories(space, state, recorded_at);
CREATE INDEX IF NOT EXISTS memories_hash ON memories(space, content_hash);
-- Filtered recall selects ids by time window or kind from these (covering) indexes.
CREATE INDEX IF NOT EXISTS memories_when ON memories(space, state, coalesce(event_at, recorded_at), id);
CREATE INDEX IF NOT EXISTS memories_kind ON memories(space, state, kind, id);
CREATE INDEX IF NOT EXISTS memories_source ON memories(source, position);
CREATE INDEX IF NOT EXISTS memories_pending ON memories(vec_state) WHERE vec_state IN ('pending_add', 'pending_remove');
-- External-content FTS5: the text lives once, in memories; only active memories are indexed.
CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(
    text, keys, content='memories', content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2'
);
-- FTS5's own rank (so ORDER BY rank LIMIT n stays inside FTS5): BM25 with the text weighted over the keys.
INSERT INTO memory_fts(memory_fts, rank) VALUES('rank', 'bm25(1.0, 0.6)');
CREATE TABLE IF NOT EXISTS audit(
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    memory_id TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_memory ON audit(memory_id);
-- Ids deleted from the catalog whose vectors the index may still hold; the store removes them.
CREATE TABLE IF NOT EXISTS tombstones(id TEXT PRIMARY KEY, space TEXT NOT NULL);
-- Typed links between memories: supersedes, refines, derived_from (a fact and the turn it came
-- from), summarises, related.
CREATE TABLE IF NOT EXISTS links(
    src TEXT NOT NULL, dst TEXT NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (src, dst, kind)
);
CREATE INDEX IF NOT EXISTS links_dst ON links(dst);
-- LLM outputs that did not parse or validate: kept for inspection (`memcli doctor`), never applied.
CREATE TABLE IF NOT EXISTS quarantine(
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, operation TEXT NOT NULL, source TEXT NOT NULL,
    error TEXT NOT NULL, raw TEXT NOT NULL
);
-- What each ingested source looked like when it was last applied (for incremental ingest).
CREATE TABLE IF NOT EXISTS sources(
    space TEXT NOT NULL, source TEXT NOT NULL, hash TEXT NOT NULL, applied_at REAL NOT NULL,
    PRIMARY KEY (space, source)
);
"""

COLUMNS = (
    "id, space, text, kind, source, position, recorded_at, event_at, tags, pinned, importance, "
    "access_count, last_access, content_hash, embed_model, keys, state, valid_from, valid_until, retired_at, superseded_by"
)
# Columns added after schema 2, with their types, for upgrading older stores in place.
ADDED_COLUMNS = (("valid_from", "REAL"), ("valid_until", "REAL"), ("retired_at", "REAL"), ("superseded_by", "TEXT"))

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
        "yours",
    ]
)


@dataclass(frozen=True)
class Filter:
    space: str
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    since: float | None = None  # on the memory's time: event time when known, else recording time
    until: float | None = None
    state: str = "active"

    def sql(self, alias: str = "m") -> tuple[str, list[Any]]:
        parts = [f"{alias}.space = ?", f"{alias}.state = ?"]
        args: list[Any] = [self.space, self.state]
        if self.kinds:
            parts.append(f"{alias}.kind IN ({','.join('?' * len(self.kinds))})")
            args += list(self.kinds)
        for tag in self.tags:
            parts.append(f"EXISTS (SELECT 1 FROM json_each({alias}.tags) WHERE value = ?)")
            args.append(tag)
        when = f"coalesce({alias}.event_at, {alias}.recorded_at)"
        if self.since is not None:
            parts.append(f"{when} >= ?")
            args.append(self.since)
        if self.until is not None:
            parts.append(f"{when} < ?")
            args.append(self.until)
        return " AND ".join(parts), args


class KeywordHit(NamedTuple):
    id: str
    score: float  # BM25 over text and keys, as ranked (higher is better)
    text: float  # BM25 of the text column alone
    keys: float  # BM25 of the keys column alone


def query_words(text: str) -> list[str]:
    """The distinct words of ``text`` a keyword search uses: stopwords dropped unless nothing else is left."""
    words = [w for w in re.findall(r"\w+", text.lower()) if len(w) > 1 or w.isdigit()]
    content = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(content))


def _match(words: Sequence[str], op: str = "OR") -> str | None:
    """An FTS5 expression joining ``words``, each a quoted phrase, with ``op``."""
    return f" {op} ".join(f'"{w}"' for w in words) if words else None


def fts_query(text: str, op: str = "OR") -> str | None:
    """An FTS5 query joining the words in ``text`` with ``op`` (stopwords dropped unless nothing else is left)."""
    return _match(query_words(text), op)


def row_to_memory(r: Sequence[Any]) -> Memory:
    return Memory(
        id=r[0],
        space=r[1],
        text=r[2],
        kind=Kind(r[3]),
        source=r[4],
        position=r[5],
        recorded_at=from_epoch(r[6]),  # type: ignore[arg-type]
        event_at=from_epoch(r[7]),
        tags=tuple(json.loads(r[8])),
        pinned=bool(r[9]),
        importance=float(r[10]),
        access_count=int(r[11]),
        last_access=from_epoch(r[12]),
        content_hash=r[13],
        embed_model=r[14],
        keys=r[15],
        state=r[16],
        valid_from=from_epoch(r[17]),
        valid_until=from_epoch(r[18]),
        retired_at=from_epoch(r[19]),
        superseded_by=r[20],
    )


class Catalog:
    def __init__(self, path: Path, journal: Journal | None = None) -> None:
        """``journal``: server mode (memcli/replica.py) — each transaction goes to the server's change
        log before it commits here."""
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
        ids = list(ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            yield from self.db.execute(f"SELECT {columns} FROM memories WHERE id IN ({','.join('?' * len(part))})", part)

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
            "ORDER BY coalesce(m.event_at, m.recorded_at) DESC, m.rowid DESC LIMIT ? OFFSET ?"
        )
        rows = self.db.execute(q, [*args, limit, offset]).fetchall()
        return [row_to_memory(r) for r in rows], int(total)

    def keyword(self, f: Filter, query: str, n: int, budget: int = 0) -> list[tuple[str, float]]:
        """Top ``n`` (id, BM25) pairs, higher is better: ``keyword_hits`` without the per-column scores."""
        return [(h.id, h.score) for h in self.keyword_hits(f, query, n, budget)]

    def keyword_hits(self, f: Filter, query: str, n: int, budget: int = 0) -> list[KeywordHit]:
        """Top ``n`` memories by BM25 (higher is better), text weighted over extra keys, each with its
        BM25 on the text alone and on the keys alone (computed for the returned rows only).

        FTS5 ranks first and only its best rows are joined and filtered (joining every match before
        ranking cost 4x at 100k); when the filter leaves fewer than ``n``, the whole match is ranked.
        ``budget`` > 0 bounds the rows FTS5 ranks (see ``_bounded_match``): ranking costs ~1.6 ms per
        1,000 matched rows at 100k memories and ~4.5 ms at 1M, where a common word matches 100k+."""
        words = query_words(query)
        if not words:
            return []
        match, floor = (_match(words), None) if budget <= 0 else self._bounded_match(words, budget)
        if match is None:
            return []
        where, args = f.sql()
        inner = "memory_fts MATCH ?" + ("" if floor is None else " AND rowid >= ?")
        inner_args: list[Any] = [match] + ([] if floor is None else [floor])
        for limit in (n * 8, -1):
            q = (
                "SELECT m.id, t.s, t.st, t.sk FROM (SELECT rowid, rank AS s, bm25(memory_fts, 1.0, 0.0) AS st, "
                f"bm25(memory_fts, 0.0, 1.0) AS sk FROM memory_fts WHERE {inner} ORDER BY rank LIMIT ?) AS t "
                f"JOIN memories m ON m.rowid = t.rowid WHERE {where} ORDER BY t.s LIMIT ?"
            )
            rows = self.db.execute(q, [*inner_args, limit, *args, n]).fetchall()
            if len(rows) >= n or limit == -1 or self._count(match, limit + 1, floor) <= limit:
                return [KeywordHit(r[0], -float(r[1]), -float(r[2]), -float(r[3])) for r in rows]
        return []

    def embeddings(self, ids: Iterable[str]) -> dict[str, bytes]:
        """The stored embedding (float32 bytes) of each of ``ids`` that exists."""
        return {r[0]: r[1] for r in self._rows_by_id("id, embedding", ids)}

    def _count(self, match: str, cap: int, floor: int | None = None) -> int:
        """Rows matching ``match`` (rowid >= ``floor``), counted up to ``cap``: O(cap), never O(matches)."""
        extra = "" if floor is None else " AND rowid >= ?"
        q = f"SELECT count(*) FROM (SELECT rowid FROM memory_fts WHERE memory_fts MATCH ?{extra} LIMIT ?)"
        return int(self.db.execute(q, [match, *([] if floor is None else [floor]), cap]).fetchone()[0])

    def _bounded_match(self, words: list[str], budget: int) -> tuple[str | None, int | None]:
        """An FTS5 expression for ``words`` whose ranking touches about ``budget`` rows, and the lowest
        rowid to rank (None: every match).

        As BM25 engines skip what cannot change the top results, this keeps the rarest words (the
        ones BM25 weighs most) while their matches fit the budget; the words too common to rank every
        match of still count where they occur together (an AND of them, when the total still fits).
        When even that is too much (every word is common), only the newest ``budget`` matches are
        ranked: the dense side still searches everything. While every word of the query matches fewer
        than ``budget`` memories nothing changes."""
        df = {w: self._count(_match([w]) or "", budget + 1) for w in words}
        kept: list[str] = []
        total = 0
        for w in sorted(words, key=lambda x: df[x]):
            if total + df[w] > budget:
                break
            kept.append(w)
            total += df[w]
        common = [w for w in words if w not in kept]
        if not common:
            return _match(words), None
        clauses = [c for c in (_match(kept), _match(common, "AND") if len(common) > 1 else None) if c]
        if len(clauses) == 2:
            match = " OR ".join(f"({c})" for c in clauses)
            if self._count(match, budget + 1) <= budget:
                return match, None
        if kept:
            return _match(kept), None
        if clauses and self._count(clauses[0], budget + 1) <= budget:
            return clauses[0], None
        # Only common words: rank the newest ``budget`` matches (rowids grow with insertion).
        both = _match(words, "AND") if len(words) > 1 else None
        widest = both if both and self._count(both, 1) else _match(words)
        q = "SELECT rowid FROM memory_fts WHERE memory_fts MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?"
        row = self.db.execute(q, (widest, budget - 1)).fetchone()
        return widest, None if row is None else int(row[0])

    def matches_all_terms(self, f: Filter, query: str) -> bool:
        """Does some memory passing ``f`` contain every content word of ``query``? (Strong keyword evidence.)"""
        match = _match(query_words(query), "AND")
        if match is None:
            return False
        where, args = f.sql()
        # FTS5 drives (CROSS JOIN fixes the order) and the first row passing the filter ends it: the
        # planner's own choice scanned the space and probed FTS5 per row (17 s at 100k), and an
        # IN (subquery) collects every match first (2.6 ms for two common words at 100k, vs 0.2).
        q = (
            "SELECT 1 FROM memory_fts t CROSS JOIN memories m ON m.rowid = t.rowid "
            f"WHERE t.memory_fts MATCH ? AND {where} LIMIT 1"
        )
        return self.db.execute(q, [match, *args]).fetchone() is not None

    def filtered_ids(self, f: Filter, cap: int) -> list[str] | None:
        """Ids of active memories that pass ``f``'s kind/time filter, or None when more than ``cap``
        do (then a filtered vector query is cheaper than passing the ids)."""
        where, args = f.sql()
        rows = self.db.execute(f"SELECT m.id FROM memories m WHERE {where} LIMIT ?", [*args, cap + 1]).fetchall()
        return None if len(rows) > cap else [r[0] for r in rows]

    def pending(self) -> list[tuple[str, str, str, str, float, bytes]]:
        """Rows whose vector-index write was not confirmed: (id, space, vec_state, kind, when, embedding)."""
        q = (
            "SELECT id, space, vec_state, kind, coalesce(event_at, recorded_at), embedding FROM memories "
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
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            db.execute(
                "INSERT INTO memory_fts(rowid, text, keys) SELECT rowid, text, keys FROM memories "
                f"WHERE id IN ({','.join('?' * len(part))})",
                part,
            )

    def fts_remove(self, db: sqlite3.Connection, ids: Sequence[str]) -> None:
        # External-content FTS5 needs the indexed values to delete them: read them before they change.
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            db.execute(
                "INSERT INTO memory_fts(memory_fts, rowid, text, keys) SELECT 'delete', rowid, text, keys "
                f"FROM memories WHERE id IN ({','.join('?' * len(part))})",
                part,
            )

    def audit(self, db: sqlite3.Connection, at: float, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        db.executemany(
            "INSERT INTO audit(at, memory_id, action, detail) VALUES(?, ?, ?, ?)",
            [(at, mid, action, json.dumps(detail, ensure_ascii=False)) for mid, action, detail in rows],
        )

    def set_vec_state(self, db: sqlite3.Connection, ids: Sequence[str], state: str) -> None:
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            db.execute(f"UPDATE memories SET vec_state = ? WHERE id IN ({','.join('?' * len(part))})", [state, *part])

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
