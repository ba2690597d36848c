"""Looking at the catalog as a whole: row counts, the links of a kind, every row. For `memcli doctor`-
style checks and for tests, which ask these instead of running SQL of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memcli.store.recording import RecordingConnection

TABLES = ("memories", "links", "audit", "sources", "quarantine", "tombstones", "meta", "review_pending", "review_rejected")


class Inspection:
    """A mixin: ``Catalog`` provides ``db``."""

    db: RecordingConnection

    def row_counts(self) -> dict[str, int]:
        """Rows in each of the catalog's tables (``TABLES``)."""
        return {t: int(self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}

    def count_where(self, *, state: str | None = None, vec_state: str | None = None, action: str | None = None) -> int:
        """Memories in ``state`` / ``vec_state``; or, with ``action``, audit entries of that action."""
        if action is not None:
            return int(self.db.execute("SELECT count(*) FROM audit WHERE action = ?", (action,)).fetchone()[0])
        parts, args = ["1"], []
        if state is not None:
            parts.append("state = ?")
            args.append(state)
        if vec_state is not None:
            parts.append("vec_state = ?")
            args.append(vec_state)
        return int(self.db.execute(f"SELECT count(*) FROM memories WHERE {' AND '.join(parts)}", args).fetchone()[0])

    def schema_version(self) -> int:
        """The catalog schema this file is at (SQLite's user_version; older stores are upgraded on open)."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def all_ids(self) -> list[str]:
        """Every memory id, in writing order."""
        return [r[0] for r in self.db.execute("SELECT id FROM memories ORDER BY rowid")]

    def links_of_kind(self, kind: str) -> set[tuple[str, str]]:
        """(src, dst) of every link of ``kind``."""
        return {(r[0], r[1]) for r in self.db.execute("SELECT src, dst FROM links WHERE kind = ?", (kind,))}

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table but the keyword index's own, sorted: two dumps are equal exactly
        when the catalogs hold the same data (what a no-op must leave unchanged)."""
        tables = [r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(self.db.execute(f"SELECT * FROM '{t}'").fetchall(), key=repr) for t in tables if t != "memory_fts"}
