"""Reads the services ask in domain words: the counts `memcli stats` shows, what prune scores, the
links and audit ids history follows, the current facts extraction compares against."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from memcli.records import Kind, Memory
from memcli.store.schema import COLUMNS, WHEN, Filter, chunks, marks, row_to_memory

if TYPE_CHECKING:
    from memcli.store.recording import RecordingConnection


class DomainQueries:
    """A mixin: ``Catalog`` provides ``db``."""

    db: RecordingConnection

    # -- stats -----------------------------------------------------------------------------------
    def kind_counts(self, space: str) -> dict[str, int]:
        """Active memories of ``space`` by kind."""
        q = "SELECT kind, count(*) FROM memories WHERE space = ? AND state = 'active' GROUP BY kind"
        return {r[0]: int(r[1]) for r in self.db.execute(q, (space,))}

    def current_count(self, space: str) -> int:
        """Memories of ``space`` that are active and current (not trashed, not retired): what recall can return."""
        q = "SELECT count(*) FROM memories WHERE space = ? AND state = 'active' AND retired_at IS NULL"
        return int(self.db.execute(q, (space,)).fetchone()[0])

    def space_summary(self, space: str) -> tuple[int, int, float | None, float | None]:
        """(trashed, pinned active, oldest time, newest time) of ``space``."""
        q = (
            f"SELECT sum(state = 'trashed'), sum(pinned AND state = 'active'), min({WHEN}), max({WHEN}) "
            "FROM memories WHERE space = ?"
        )
        trashed, pinned, oldest, newest = self.db.execute(q, (space,)).fetchone()
        return int(trashed or 0), int(pinned or 0), oldest, newest

    def has_active(self, f: Filter) -> bool:
        """Does any memory pass ``f``? (Recall asks when the vector index found none: was it there?)"""
        where, args = f.sql()
        return self.db.execute(f"SELECT 1 FROM memories m WHERE {where} LIMIT 1", args).fetchone() is not None

    # -- lifecycle -------------------------------------------------------------------------------
    def each_memory(self, space: str, kinds: Sequence[str] = (), *, state: str = "active") -> Iterator[Memory]:
        """Every memory of ``space`` in ``state`` (of ``kinds``, when given), streamed."""
        where, args = self._space_kinds(space, kinds, state)
        for row in self.db.execute(f"SELECT {COLUMNS} FROM memories WHERE {where}", args):
            yield row_to_memory(row)

    def trashed_before(self, space: str, kinds: Sequence[str], cutoff: float) -> list[Memory]:
        """Memories of ``space`` put in the trash at or before ``cutoff``, oldest first."""
        where, args = self._space_kinds(space, kinds, "trashed")
        q = f"SELECT {COLUMNS} FROM memories WHERE {where} AND trashed_at IS NOT NULL AND trashed_at <= ? ORDER BY trashed_at"
        return [row_to_memory(r) for r in self.db.execute(q, [*args, cutoff])]

    def still_trashed_before(self, ids: Sequence[str], cutoff: float) -> set[str]:
        """Which of ``ids`` are still in the trash since ``cutoff`` or earlier (nobody restored them)."""
        out: set[str] = set()
        for part in chunks(ids):
            q = f"SELECT id FROM memories WHERE id IN ({marks(len(part))}) AND state = 'trashed' AND trashed_at <= ?"
            out.update(r[0] for r in self.db.execute(q, [*part, cutoff]))
        return out

    @staticmethod
    def _space_kinds(space: str, kinds: Sequence[str], state: str) -> tuple[str, list[object]]:
        where = "space = ? AND state = ?" + (f" AND kind IN ({marks(len(kinds))})" if kinds else "")
        return where, [space, state, *kinds]

    # -- history ---------------------------------------------------------------------------------
    def links_with_time(self, memory_id: str) -> list[tuple[str, str, str, float]]:
        """(src, dst, kind, at) of every link touching ``memory_id``, oldest first."""
        q = "SELECT src, dst, kind, at FROM links WHERE src = ? UNION SELECT src, dst, kind, at FROM links WHERE dst = ? ORDER BY 4, 3"
        return [(r[0], r[1], r[2], float(r[3])) for r in self.db.execute(q, (memory_id, memory_id))]

    def audited_ids(self, prefix: str) -> list[str]:
        """Up to two ids in the audit log starting with ``prefix`` (a purged memory keeps its entries' ids)."""
        if not re.fullmatch(r"[0-9a-f]{4,32}", prefix):
            return []
        q = "SELECT DISTINCT memory_id FROM audit WHERE memory_id >= ? AND memory_id < ? LIMIT 2"
        return [str(r[0]) for r in self.db.execute(q, (prefix, prefix + "g"))]

    def kept_texts_containing(self, text: str) -> int:
        """How many memories (any state) still say ``text`` in their text or keys."""
        q = "SELECT count(*) FROM memories WHERE instr(text, ?) > 0 OR instr(keys, ?) > 0"
        return int(self.db.execute(q, (text, text)).fetchone()[0])

    # -- learning --------------------------------------------------------------------------------
    def current_fact_ids(self, space: str) -> list[str]:
        """Ids of the facts and profile entries of ``space`` that are true now (not retired, not trashed)."""
        q = "SELECT id FROM memories WHERE space = ? AND kind IN (?, ?) AND state = 'active' AND retired_at IS NULL"
        return [r[0] for r in self.db.execute(q, (space, Kind.FACT.value, Kind.PROFILE.value))]
