"""The catalog's schema, its row shape, and the SQL filter every listing and search shares.

Schema changes go here (with SCHEMA_VERSION and, for new columns, ADDED_COLUMNS): the catalog
upgrades older stores in place when it opens them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from memcli.records import Kind, Memory, from_epoch

# 2: indexes for filtered recall; 3: temporal truth (valid_from/valid_until/retired_at/superseded_by),
# links between memories, quarantined LLM outputs; 4: facts waiting for review ([chat] review) and the
# fingerprints of rejected ones (new tables only). Older stores are upgraded in place on open.
SCHEMA_VERSION = 4

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
-- Facts chat learned while [chat] review is on (memcli/store/review.py). Not memories yet: outside the
-- memories table and both indexes, so nothing takes them for truth. On approval each becomes a memory
-- with the same id, and what it replaces (replaces, relation, valid_until) is retired only then.
CREATE TABLE IF NOT EXISTS review_pending(
    id TEXT PRIMARY KEY, space TEXT NOT NULL, text TEXT NOT NULL, content_hash TEXT NOT NULL,
    source TEXT NOT NULL, position INTEGER, recorded_at REAL NOT NULL, event_at REAL, valid_from REAL,
    tags TEXT NOT NULL DEFAULT '[]', importance REAL NOT NULL, embed_model TEXT NOT NULL, embedding BLOB NOT NULL,
    derived_from TEXT, replaces TEXT, relation TEXT, valid_until REAL, said TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_pending_space ON review_pending(space, recorded_at);
-- Rejected facts: fingerprints of their words ('fact') and of the message they came from ('said'), never
-- the text; a candidate matching one is not learned again.
CREATE TABLE IF NOT EXISTS review_rejected(
    space TEXT NOT NULL, what TEXT NOT NULL CHECK (what IN ('fact', 'said')), fingerprint TEXT NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (space, what, fingerprint)
);
"""

# A memory's time (``Memory.when``): event time when known, else recording time. The memories_when index
# is built on exactly this expression.
WHEN = "coalesce(event_at, recorded_at)"
REINDEXING = "reindexing:"  # meta embed_model while a reindex to the model after the colon is unfinished
CHUNK = 500  # ids per "IN (...)" query: under SQLite's host-parameter limit on every build


def chunks(ids: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    """``ids`` in lists of at most ``size`` (for ``id IN (?, ...)`` queries)."""
    for i in range(0, len(ids), size):
        yield list(ids[i : i + size])


def marks(n: int) -> str:
    """``?, ?, ...`` for ``n`` parameters."""
    return ",".join("?" * n)


COLUMNS = (
    "id, space, text, kind, source, position, recorded_at, event_at, tags, pinned, importance, "
    "access_count, last_access, content_hash, embed_model, keys, state, valid_from, valid_until, retired_at, superseded_by"
)
# Columns added after schema 2, with their types, for upgrading older stores in place.
ADDED_COLUMNS = (("valid_from", "REAL"), ("valid_until", "REAL"), ("retired_at", "REAL"), ("superseded_by", "TEXT"))

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
        when = f"coalesce({alias}.event_at, {alias}.recorded_at)"  # WHEN, qualified
        if self.since is not None:
            parts.append(f"{when} >= ?")
            args.append(self.since)
        if self.until is not None:
            parts.append(f"{when} < ?")
            args.append(self.until)
        return " AND ".join(parts), args



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
