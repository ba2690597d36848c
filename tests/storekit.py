"""What tests do to a store that memcli itself never does: age a memory, damage the catalog, rewind a
server-mode cache (test_server_segments.py does that to a closed cache file, from outside). The one place in the tests that writes SQL; everything they *read* goes through
the store's own inspection methods (memcli/store/inspect.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memcli.api import Memcli
from memcli.store import Catalog

# Columns a test may set directly (times and counters memcli only changes over days of use).
SETTABLE = frozenset({"access_count", "last_access", "pinned", "trashed_at", "recorded_at", "event_at", "importance"})


def catalog(mem: Memcli) -> Catalog:
    return mem._ctx.store.catalog


def set_columns(mem: Memcli, memory_id: str, **values: Any) -> None:
    """Set catalog columns of one memory, as if time had passed (e.g. ``trashed_at`` 40 days ago)."""
    bad = set(values) - SETTABLE
    assert not bad, f"not a column tests may set: {bad}"
    cols = ", ".join(f"{k} = ?" for k in values)
    with catalog(mem).transaction() as db:
        db.execute(f"UPDATE memories SET {cols} WHERE id = ?", [*values.values(), memory_id])


def add_dangling_link(mem: Memcli, src: str, dst: str = "feedfacefeedface") -> None:
    """Damage: a link to a memory that is not there (a purge never leaves one)."""
    with catalog(mem).transaction() as db:
        db.execute("INSERT INTO links(src, dst, kind, at) VALUES(?, ?, 'related', 0)", (src, dst))


def make_schema_3(db_file: Path) -> None:
    """Turn a closed catalog into what memcli wrote before schema 4 (no review tables)."""
    import sqlite3

    db = sqlite3.connect(db_file)
    db.executescript("DROP TABLE review_pending; DROP TABLE review_rejected; PRAGMA user_version = 3;")
    db.close()


def schema_version(db_file: Path) -> int:
    import sqlite3

    db = sqlite3.connect(db_file)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def empty_keyword_index(mem: Memcli) -> None:
    """Damage: the keyword index loses every entry (memory writes index their text in the same transaction)."""
    with catalog(mem).transaction() as db:
        db.execute("INSERT INTO memory_fts(memory_fts) VALUES('delete-all')")
