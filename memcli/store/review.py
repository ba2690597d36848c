"""Facts waiting for the user's review (``[chat] review = true``), and fingerprints of rejected ones.

A pending fact is not a memory yet. It lives in its own table, outside ``memories``, the keyword index
and the vector index, so that nothing which reads memories -- recall, the chat prompt and profile,
"forget that ...", consolidation, export -- can take it for truth, and none of them needs a filter
for it (a filtered Chroma query costs 10-20x an unfiltered one). Its embedding is kept with it, so
approving needs no model unless the store has moved to another embedding model meanwhile.

Approving is an ordinary write (``MemoryStore.apply``: pending -> vector index -> confirmed) in which
the memory takes the pending fact's id, retires what the fact replaces, and removes it from the queue,
all in the first transaction: a crash leaves it either pending or approved, never both.

A rejected fact's text is deleted (and, in server mode, scrubbed from the server's change log); only
fingerprints stay, of its words and of the message it came from, so the same words do not teach it
again.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from memcli.records import Kind, Memory, from_epoch
from memcli.store.core import MemoryStore
from memcli.store.values import NewMemory, Succession, content_hash, new_id, vec_to_blob

if TYPE_CHECKING:
    from memcli.backends.base import Vector
    from memcli.store.catalog import Catalog

_COLUMNS = (
    "id, space, text, source, position, recorded_at, event_at, valid_from, tags, importance, embed_model, embedding, "
    "derived_from, replaces, relation, valid_until, said"
)


def fingerprint(text: str) -> str:
    """What two wordings share when they are the same words: case, spacing and punctuation aside."""
    return hashlib.sha256(" ".join(re.findall(r"\w+", text.lower())).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PendingRow:
    id: str
    space: str
    text: str
    source: str  # chat:SESSION
    position: int | None  # the turn it was learned from
    recorded_at: float  # when it was learned
    event_at: float | None
    valid_from: float | None
    tags: tuple[str, ...]
    importance: float
    embed_model: str
    embedding: bytes
    derived_from: str | None  # the stored user turn
    replaces: str | None  # the fact it refines or supersedes once approved
    relation: str | None  # "refine" | "supersede"
    valid_until: float | None  # for a supersede: when the replaced fact stopped being true
    said: str  # fingerprint of the user's message

    def as_memory(self) -> Memory:
        """As the memory it would become (state "pending"): for scrubbing its text."""
        return Memory(
            id=self.id, space=self.space, text=self.text, kind=Kind.FACT, source=self.source, position=self.position,
            recorded_at=from_epoch(self.recorded_at),  # type: ignore[arg-type]
            event_at=from_epoch(self.event_at), tags=self.tags, pinned=False, importance=self.importance, access_count=0,
            last_access=None, content_hash=content_hash(self.text), embed_model=self.embed_model, keys="", state="pending",
            valid_from=from_epoch(self.valid_from),
        )  # fmt: skip


def _row(r: Sequence[Any]) -> PendingRow:
    return PendingRow(
        id=r[0], space=r[1], text=r[2], source=r[3], position=r[4], recorded_at=r[5], event_at=r[6], valid_from=r[7],
        tags=tuple(json.loads(r[8])), importance=r[9], embed_model=r[10], embedding=r[11], derived_from=r[12],
        replaces=r[13], relation=r[14], valid_until=r[15], said=r[16],
    )  # fmt: skip


class ReviewQueue:
    """The review queue of a store, in domain words (``ReviewQueue(ctx.store).pending_facts(space)``)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    @property
    def catalog(self) -> Catalog:
        return self.store.catalog  # server mode may swap it for a rebuilt cache

    # -- reads -----------------------------------------------------------------------------------
    def pending_facts(self, space: str | None = None) -> list[PendingRow]:
        """Facts waiting for review (of ``space``, or every space), oldest first."""
        where, args = ("WHERE space = ?", [space]) if space is not None else ("", [])
        q = f"SELECT {_COLUMNS} FROM review_pending {where} ORDER BY recorded_at, rowid"
        return [_row(r) for r in self.catalog.db.execute(q, args)]

    def find_pending(self, prefix: str) -> list[PendingRow]:
        """Pending facts whose id starts with ``prefix`` (ids are shown shortened); at most two."""
        if not re.fullmatch(r"[0-9a-f]{4,32}", prefix):
            return []
        q = f"SELECT {_COLUMNS} FROM review_pending WHERE id >= ? AND id < ? LIMIT 2"
        return [_row(r) for r in self.catalog.db.execute(q, (prefix, prefix + "g"))]

    def pending_with_text(self, space: str, text: str) -> PendingRow | None:
        """A pending fact of ``space`` saying ``text`` word for word."""
        q = f"SELECT {_COLUMNS} FROM review_pending WHERE space = ? AND content_hash = ? LIMIT 1"
        r = self.catalog.db.execute(q, (space, content_hash(text))).fetchone()
        return None if r is None else _row(r)

    def was_rejected(self, space: str, *, fact: str, said: str | None) -> str | None:
        """Which fingerprint of a rejected fact matches: "fact" (its words), "said" (the same message it
        came from), or None."""
        pairs = [("fact", fingerprint(fact))] + ([("said", said)] if said else [])
        q = "SELECT 1 FROM review_rejected WHERE space = ? AND what = ? AND fingerprint = ?"
        for what, fp in pairs:
            if self.catalog.db.execute(q, (space, what, fp)).fetchone() is not None:
                return what
        return None

    # -- writes ----------------------------------------------------------------------------------
    def hold(
        self,
        space: str,
        item: NewMemory,
        vector: Vector,
        model_id: str,
        *,
        succeeds: Succession | None,
        derived_from: str | None,
        said: str,
    ) -> str:
        """Queue a learned fact for review instead of writing it; returns its id (its memory id once approved)."""
        pid = new_id()
        now = time.time()
        row = (
            pid, space, item.text, content_hash(item.text), item.source, item.position,
            item.recorded_at if item.recorded_at is not None else now, item.event_at, item.valid_from,
            json.dumps(list(item.tags), ensure_ascii=False), item.importance, model_id, vec_to_blob(vector), derived_from,
            succeeds.old.id if succeeds else None, succeeds.reason if succeeds else None,
            succeeds.valid_until if succeeds else None, said,
        )  # fmt: skip
        with self.store.write_lock(), self.catalog.transaction() as db:
            db.execute(
                "INSERT INTO review_pending(id, space, text, content_hash, source, position, recorded_at, event_at, "
                "valid_from, tags, importance, embed_model, embedding, derived_from, replaces, relation, valid_until, said) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return pid

    def approve_pending(
        self, row: PendingRow, vector: Vector, model_id: str, *, succeeds: Succession | None, links: Sequence[tuple[str, str]]
    ) -> str:
        """Make ``row`` a memory (same id); ``succeeds`` and ``links`` as in ``apply``."""
        item = NewMemory(
            text=row.text, kind=Kind.FACT, source=row.source, position=row.position, event_at=row.event_at,
            tags=row.tags, importance=row.importance, recorded_at=row.recorded_at, valid_from=row.valid_from,
        )  # fmt: skip
        [mid] = self.store.apply(row.space, [(item, vector)], model_id, succeeds=succeeds, links=links, approves=row.id)
        return mid

    def reword_pending(self, row: PendingRow, text: str, vector: Vector, model_id: str) -> PendingRow:
        """The user's wording for ``row`` (re-embedded by the caller); the old wording counts as rejected."""
        blob = vec_to_blob(vector)
        with self.store.write_lock():
            with self.catalog.transaction() as db:
                db.execute(
                    "UPDATE review_pending SET text = ?, content_hash = ?, embed_model = ?, embedding = ? WHERE id = ?",
                    (text, content_hash(text), model_id, blob, row.id),
                )
                self._fingerprint(db, [(row.space, "fact", fingerprint(row.text))], time.time())
            self._scrub([row])
        return replace(row, text=text, embed_model=model_id, embedding=blob)

    def reject_pending(self, rows: Sequence[PendingRow], *, remember: bool = True) -> None:
        """Take ``rows`` out of the queue and delete their text; with ``remember``, keep the fingerprints
        that stop the same words from teaching them again (without: they were known already)."""
        if not rows:
            return
        with self.store.write_lock():
            with self.catalog.transaction() as db:
                db.executemany("DELETE FROM review_pending WHERE id = ?", [(r.id,) for r in rows])
                if remember:
                    prints = [(r.space, "fact", fingerprint(r.text)) for r in rows] + [(r.space, "said", r.said) for r in rows]
                    self._fingerprint(db, prints, time.time())
            self._scrub(rows)

    def _fingerprint(self, db: Any, prints: Sequence[tuple[str, str, str]], at: float) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO review_rejected(space, what, fingerprint, at) VALUES(?, ?, ?, ?)",
            [(*p, at) for p in prints],
        )

    def _scrub(self, rows: Sequence[PendingRow]) -> None:
        """Server mode: the text goes from the server's change log too (as for a purged memory)."""
        if self.catalog.journal is not None:
            self.catalog.journal.scrub([r.as_memory() for r in rows])

