"""What `memcli doctor` asks the catalog: does each part agree with the rows, and rebuild what can be
rebuilt from them (the catalog is the truth)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from memcli.store.schema import WHEN, chunks, marks

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from contextlib import AbstractContextManager
    from sqlite3 import Connection

    from memcli.store.recording import RecordingConnection

_DANGLING = "FROM links WHERE src NOT IN (SELECT id FROM memories) OR dst NOT IN (SELECT id FROM memories)"


class HealthChecks:
    """The doctor's half of the catalog (a mixin: ``Catalog`` provides ``db`` and ``transaction``)."""

    db: RecordingConnection

    if TYPE_CHECKING:

        def transaction(self, *, record: bool = True) -> AbstractContextManager[Connection]: ...

    def integrity(self) -> str:
        """SQLite's quick_check: "ok" or what is wrong."""
        return str(self.db.execute("PRAGMA quick_check").fetchone()[0])

    def keyword_index_counts(self) -> tuple[int, int, int, int]:
        """(entries, active memories, active memories missing, entries for no active memory)."""
        # count(*) on an external-content FTS5 table counts its content table (trashed rows too). The
        # index's own per-row records (the docsize shadow table) say what is really indexed.
        indexed = {r[0] for r in self.db.execute("SELECT id FROM memory_fts_docsize")}
        active = {r[0] for r in self.db.execute("SELECT rowid FROM memories WHERE state = 'active'")}
        return len(indexed), len(active), len(active - indexed), len(indexed - active)

    def rebuild_keyword_index(self) -> None:
        with self.transaction() as db:
            # Not 'rebuild': that indexes every row of the content table, trashed ones included (whose
            # terms a later purge would then leave behind). Empty it and index the active rows only.
            db.execute("INSERT INTO memory_fts(memory_fts) VALUES('delete-all')")
            db.execute("INSERT INTO memory_fts(rowid, text, keys) SELECT rowid, text, keys FROM memories WHERE state = 'active'")

    def count(self, *, embed_model: str | None = None) -> int:
        """Memories in every space and state (of one embedding model when given)."""
        if embed_model is None:
            return int(self.db.execute("SELECT count(*) FROM memories").fetchone()[0])
        return int(self.db.execute("SELECT count(*) FROM memories WHERE embed_model = ?", (embed_model,)).fetchone()[0])

    def all_spaces(self) -> list[str]:
        """Every space that holds a memory, trashed ones included."""
        return sorted(r[0] for r in self.db.execute("SELECT DISTINCT space FROM memories"))

    def active_ids(self, space: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM memories WHERE space = ? AND state = 'active'", (space,))}

    def index_rows(self, ids: Iterable[str]) -> Iterator[tuple[str, str, float, bytes]]:
        """What the vector index holds of each memory: (id, kind, time, embedding)."""
        for part in chunks(list(ids)):
            yield from self.db.execute(f"SELECT id, kind, {WHEN}, embedding FROM memories WHERE id IN ({marks(len(part))})", part)

    def dangling_links(self) -> tuple[int, int]:
        """(links whose either end is no longer in the catalog, all links)."""
        dangling = int(self.db.execute("SELECT count(*) " + _DANGLING).fetchone()[0])
        return dangling, int(self.db.execute("SELECT count(*) FROM links").fetchone()[0])

    def remove_dangling_links(self) -> None:
        with self.transaction() as db:
            db.execute("DELETE " + _DANGLING)

    def quarantine_counts(self) -> tuple[int, int]:
        """(LLM outputs that did not parse or validate, facts dropped as not grounded in the user's words)."""
        counts = dict(self.db.execute("SELECT operation = 'ungrounded', count(*) FROM quarantine GROUP BY 1").fetchall())
        return int(counts.get(0, 0)), int(counts.get(1, 0))

    def tagged(self, tag: str, limit: int) -> tuple[int, list[str]]:
        """(active memories carrying ``tag``, the ids of the latest ``limit`` of them)."""
        # instr() first: a cheap string test that spares parsing the JSON of every untagged row.
        where = "state = 'active' AND instr(tags, ?) > 0 AND EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?)"
        args = (json.dumps(tag), tag)
        n = int(self.db.execute(f"SELECT count(*) FROM memories WHERE {where}", args).fetchone()[0])
        ids = [r[0] for r in self.db.execute(f"SELECT id FROM memories WHERE {where} ORDER BY recorded_at DESC LIMIT ?", (*args, limit))]
        return n, ids
