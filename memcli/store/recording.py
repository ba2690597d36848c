"""What the catalog tells a listener about its writes (server mode replicates them, memcli/store/replica.py).

The catalog's connection records each write statement of a transaction with its parameters while a
listener is attached; before COMMIT the listener gets them (raising there rolls the transaction back).
The catalog knows only this protocol, never the server-mode code behind it.
"""

from __future__ import annotations

import base64
import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from memcli.records import Memory

WRITE_RE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)

Stmt = list[Any]  # [sql, params (a list) or a list of params lists, many (0/1)]


class ChangeListener(Protocol):
    """Told about every committed change of a catalog (server mode: the server's change log)."""

    def publish(self, db: sqlite3.Connection, stmts: list[Stmt]) -> None:
        """One transaction's write statements, before its COMMIT; raising rolls it back."""

    def scrub(self, memories: Sequence[Memory]) -> None:
        """These memories were purged: remove their text from wherever the listener keeps statements."""


def enc(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(v)).decode("ascii")}
    return v


def dec(v: Any) -> Any:
    if isinstance(v, dict):
        return base64.b64decode(v["b64"])
    return v


class RecordingConnection(sqlite3.Connection):
    """A sqlite3 connection that, while ``recording`` is a list, appends every write statement to it."""

    recording: list[Stmt] | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if self.recording is not None and WRITE_RE.match(sql):
            if isinstance(parameters, dict):  # fail loudly rather than replicate the wrong values
                raise TypeError("named SQL parameters are not supported in a replicated transaction")
            self.recording.append([sql, [enc(p) for p in parameters], 0])
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        if self.recording is not None and WRITE_RE.match(sql):
            rows = [list(p) for p in parameters]
            self.recording.append([sql, [[enc(v) for v in r] for r in rows], 1])
            return super().executemany(sql, rows)
        return super().executemany(sql, parameters)


def run(db: sqlite3.Connection, stmt: Stmt) -> None:
    sql, params, many = stmt
    if many:
        sqlite3.Connection.executemany(db, sql, [[dec(v) for v in r] for r in params])
    else:
        sqlite3.Connection.execute(db, sql, [dec(v) for v in params])
