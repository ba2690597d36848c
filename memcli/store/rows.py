"""Whole catalog rows, for `memcli export` / `memcli import` (memcli/services/transfer.py owns the
file format; this module owns the SQL).

Export reads one consistent snapshot through a read-only connection of its own, however long the
export takes. Import writes rows as they were exported (ids, times, counters), each batch one
transaction marked ``pending_add``, then replayed into the vector index the way the store replays an
interrupted write (``MemoryStore.replay_pending``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from memcli.store.schema import WHEN, chunks, marks

if TYPE_CHECKING:
    from memcli.store.core import MemoryStore

# Catalog columns of a memory, in export order (the embedding and vec_state are handled apart).
FIELDS = (
    "id", "space", "text", "kind", "source", "position", "recorded_at", "event_at", "tags", "pinned", "importance",
    "access_count", "last_access", "content_hash", "embed_model", "keys", "state", "trashed_at", "valid_from",
    "valid_until", "retired_at", "superseded_by",
)  # fmt: skip


class Snapshot:
    """The catalog at one moment, read-only. Use as a context manager."""

    def __init__(self, path: Path, *, space: str | None, trash: bool) -> None:
        self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        self.db.execute("BEGIN")
        parts, self._args = ["1"], [] if space is None else [space]
        if space is not None:
            parts.append("space = ?")
        if not trash:
            parts.append("state = 'active'")
        self._where = " AND ".join(parts)
        self._space = space

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.db.close()

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def memories(self) -> Iterator[dict[str, Any]]:
        """Each selected memory as {column: stored value} plus "embedding" (bytes), in writing order."""
        q = f"SELECT {', '.join(FIELDS)}, embedding FROM memories WHERE {self._where} ORDER BY rowid"
        for row in self.db.execute(q, self._args):
            yield {**dict(zip(FIELDS, row)), "embedding": row[-1]}

    def links(self) -> Iterator[tuple[str, str, str, float]]:
        yield from self.db.execute("SELECT src, dst, kind, at FROM links ORDER BY at, src, dst, kind")

    def audit(self) -> Iterator[tuple[float, str, str, str]]:
        """(at, memory id, action, detail as JSON text), in the order they happened."""
        yield from self.db.execute("SELECT at, memory_id, action, detail FROM audit ORDER BY seq")

    def sources(self) -> Iterator[tuple[str, str, str, float]]:
        """(space, source, content hash, applied at) of the selected space(s)."""
        q = "SELECT space, source, hash, applied_at FROM sources" + (" WHERE space = ?" if self._space else "") + " ORDER BY 1, 2"
        yield from self.db.execute(q, self._args)

    def summary(self) -> tuple[tuple[str, ...], int, int]:
        """(spaces, memories, of which trashed) of the selection."""
        spaces = tuple(r[0] for r in self.db.execute(f"SELECT DISTINCT space FROM memories WHERE {self._where} ORDER BY 1", self._args))
        n, trashed = self.db.execute(f"SELECT count(*), total(state = 'trashed') FROM memories WHERE {self._where}", self._args).fetchone()
        return spaces, int(n), int(trashed)

    def groups(self) -> list[tuple[str, str, bool]]:
        """(space, kind, in the trash) of the selection, sorted."""
        q = f"SELECT DISTINCT space, kind, state = 'trashed' FROM memories WHERE {self._where} ORDER BY 1, 2"
        return [(r[0], r[1], bool(r[2])) for r in self.db.execute(q, self._args)]

    def readable(self, space: str, kind: str, in_trash: bool) -> Iterator[tuple[Any, ...]]:
        """For a readable listing, oldest first: (id, text, kind, source, position, time, tags (JSON),
        pinned, valid_until, retired_at, superseded_by)."""
        q = (
            f"SELECT id, text, kind, source, position, {WHEN}, tags, pinned, valid_until, retired_at, superseded_by "
            f"FROM memories WHERE {self._where} AND space = ? AND kind = ? AND (state = 'trashed') = ? ORDER BY {WHEN}, rowid"
        )
        yield from self.db.execute(q, [*self._args, space, kind, in_trash])


def insert_memories(
    store: MemoryStore, rows: Sequence[dict[str, Any]], history: Sequence[tuple[float, str, str, str]], note: dict[str, Any], at: float
) -> None:
    """Write exported rows (``FIELDS`` + "embedding") and their audit ``history`` (at, id, action,
    detail JSON) in one transaction, audit each with ``note``, then index them. Caller holds the write
    lock and has checked that no id exists yet."""
    cat = store.catalog
    ids = [m["id"] for m in rows]
    with cat.transaction() as db:
        db.executemany(
            f"INSERT INTO memories({', '.join(FIELDS)}, embedding, vec_state) VALUES({marks(len(FIELDS) + 2)})",
            [_row(m) for m in rows],
        )
        # A purged id whose vector removal is still pending must not take the new vector with it.
        db.executemany("DELETE FROM tombstones WHERE id = ?", [(i,) for i in ids])
        cat.fts_add(db, [m["id"] for m in rows if m["state"] == "active"])
        db.executemany("INSERT INTO audit(at, memory_id, action, detail) VALUES(?, ?, ?, ?)", list(history))
        cat.audit(db, at, [(i, "import", note) for i in ids])
    store.replay_pending()  # replays the batch's pending_add rows into the vector index


def _row(m: dict[str, Any]) -> tuple[Any, ...]:
    values = [m[f] for f in FIELDS]
    values[FIELDS.index("tags")] = json.dumps(m["tags"], ensure_ascii=False)
    values[FIELDS.index("pinned")] = int(m["pinned"])
    return (*values, m["embedding"], "pending_add" if m["state"] == "active" else "absent")


def insert_links(store: MemoryStore, links: Sequence[tuple[str, str, str, float]]) -> int:
    """Links whose both ends exist; returns how many are in the store afterwards (new or already there)."""
    written = 0
    with store.catalog.transaction() as db:
        for src, dst, kind, at in links:
            cur = db.execute(
                "INSERT OR IGNORE INTO links(src, dst, kind, at) SELECT ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM memories WHERE id = ?) AND EXISTS (SELECT 1 FROM memories WHERE id = ?)",
                (src, dst, kind, at, src, dst),
            )
            there = cur.rowcount > 0 or (
                db.execute("SELECT 1 FROM links WHERE src = ? AND dst = ? AND kind = ?", (src, dst, kind)).fetchone() is not None
            )
            written += there
    return written


def insert_sources(store: MemoryStore, sources: Sequence[tuple[str, str, str, float]]) -> int:
    """Ingested-source records (space, source, hash, applied at) not already known; returns how many were new."""
    with store.catalog.transaction() as db:
        before = db.execute("SELECT count(*) FROM sources").fetchone()[0]
        db.executemany("INSERT OR IGNORE INTO sources(space, source, hash, applied_at) VALUES(?, ?, ?, ?)", list(sources))
        return int(db.execute("SELECT count(*) FROM sources").fetchone()[0] - before)


def spaces_of(store: MemoryStore, ids: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for part in chunks(ids):
        out.update(r[0] for r in store.catalog.db.execute(f"SELECT DISTINCT space FROM memories WHERE id IN ({marks(len(part))})", part))
    return out
