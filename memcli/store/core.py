"""The memory store: the SQLite catalog (source of truth) plus a vector index derived from it.

Write protocol, so that a write interrupted at any point leaves no half-memory behind:

1. one SQLite transaction writes the rows (text, metadata, embedding), the keyword index and the audit
   entries, marking each row ``pending_add`` (or ``pending_remove``);
2. the vector index is updated (idempotent upsert/delete);
3. a second transaction marks the rows ``indexed`` (or ``absent``).

If step 2 fails in the same process, step 1 is undone. If the process dies between steps, the next
open replays every pending row from the catalog (the embedding is stored there), so the two agree again
before anything is read. Writers also take an exclusive file lock, because embedded Chroma's files are
not safe for two writing processes at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from memcli.backends.base import Embedder, Vector, VectorIndex, VectorMeta
from memcli.errors import ExitCode, MemcliFailure, store_error, usage_error
from memcli.records import Kind, Memory
from memcli.store.catalog import Catalog
from memcli.store.schema import REINDEXING, chunks, marks
from memcli.store.values import NewMemory, Succession, blob_to_vec, content_hash, new_id, vec_to_blob
from memcli.text.intent import flag_tags

if TYPE_CHECKING:
    from memcli.store.replica import Journal

_OWN_STYLE = (Kind.FACT, Kind.SUMMARY, Kind.PROFILE)  # written "The user ..." by memcli (text/intent.py)


class MemoryStore:
    def __init__(
        self,
        data_dir: Path,
        index_factory: Callable[[], VectorIndex],
        catalog: Catalog | None = None,
        replica: Journal | None = None,
    ) -> None:
        """``catalog``: an already open one; ``replica``: server mode, the journal that keeps it a synced
        cache of the server (memcli/store/replica.py)."""
        self.data_dir = data_dir
        self.catalog = catalog or Catalog(data_dir / "memcli.sqlite3")
        self.replica = replica
        self._index_factory = index_factory
        self._index: VectorIndex | None = None
        self._lock_file: IO[str] | None = None
        self._lock_depth = 0
        # Chat writes memories from a background thread: threads of one process queue here, processes
        # at the fcntl lock below.
        self._thread_lock = threading.RLock()
        self.on_wait: Callable[[], None] | None = None  # told when a writer must wait for another process

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            self._index = self._index_factory()
        return self._index

    def close(self) -> None:
        self.catalog.close()

    # -- server mode -----------------------------------------------------------------------------
    def server_cache(self) -> tuple[int, int, str] | None:
        """Server mode: (change-log records applied to this cache, records on the server, where);
        None for an embedded store."""
        if self.replica is None:
            return None
        applied, on_server = self.replica.counts(self.catalog)
        return applied, on_server, self.replica.where

    def rebuild_server_cache(self, reason: str) -> None:
        """Server mode: empty the cache and replay the server's whole change log into it."""
        if self.replica is not None:
            self.catalog = self.replica.rebuild(self.catalog, reason)

    def sync(self) -> None:
        """Server mode: apply what the server's change log has that this cache has not."""
        if self.replica is not None:
            self.catalog = self.replica.sync(self.catalog)

    # -- locking & consistency -------------------------------------------------------------------
    @contextmanager
    def write_lock(self, wait: bool = True) -> Iterator[None]:
        """Exclusive across processes and threads; re-entrant within one thread."""
        with self._thread_lock, self._process_lock(wait):
            yield

    @contextmanager
    def _process_lock(self, wait: bool) -> Iterator[None]:
        if self._lock_depth == 0:
            lock_path = self.data_dir / "write.lock"
            f = open(os.open(lock_path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600), "a")  # noqa: SIM115 - held across the with-block below
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    f.close()
                    raise MemcliFailure(
                        "another memcli process is writing to this store",
                        hint="Wait for it to finish, then try again.",
                        code=ExitCode.STORE,
                    )
                if self.on_wait is not None:
                    self.on_wait()
                fcntl.flock(f, fcntl.LOCK_EX)
            self._lock_file = f
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_file is not None:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
                self._lock_file = None

    def replay_pending(self) -> int:
        """Replay vector-index writes that a dead process left unconfirmed. Returns how many."""
        if not self.catalog.pending() and not self.catalog.tombstones():
            return 0
        with self.write_lock():
            pending = self.catalog.pending()
            tombs = self.catalog.tombstones()
            adds = [p for p in pending if p[2] == "pending_add"]
            removes = [(p[0], p[1]) for p in pending if p[2] == "pending_remove"] + tombs
            for space in {p[1] for p in adds}:
                part = [p for p in adds if p[1] == space]
                self.index.upsert(
                    space,
                    [p[0] for p in part],
                    [blob_to_vec(p[5]) for p in part],
                    [VectorMeta(p[3], p[4]) for p in part],
                )
            for space in {sp for _, sp in removes}:
                self.index.delete(space, [i for i, sp in removes if sp == space])
            with self.catalog.transaction() as db:
                self.catalog.set_vec_state(db, [p[0] for p in adds], "indexed")
                self.catalog.set_vec_state(db, [p[0] for p in pending if p[2] == "pending_remove"], "absent")
                db.executemany("DELETE FROM tombstones WHERE id = ?", [(i,) for i, _ in tombs])
            return len(pending) + len(tombs)

    def check_model(self, embedder: Embedder) -> None:
        """Refuse to mix vectors of two embedding models; the first model to write claims the store."""
        model, dim = self.catalog.meta("embed_model"), self.catalog.meta("embed_dim")
        if model is None:
            with self.catalog.transaction() as db:
                self.catalog.set_meta(db, "embed_model", embedder.model_id)
                self.catalog.set_meta(db, "embed_dim", str(embedder.dim))
            return
        if model.startswith(REINDEXING):
            raise store_error(
                f"a `memcli reindex` to {model.removeprefix(REINDEXING)} was interrupted",
                hint="Run `memcli reindex` again to finish it (memories already re-embedded are kept).",
            )
        if model != embedder.model_id or int(dim or 0) != embedder.dim:
            raise store_error(
                f"this store was built with embedding model {model} ({dim} dimensions), "
                f"but the configured model is {embedder.model_id} ({embedder.dim} dimensions)",
                hint="Run `memcli reindex` to re-embed every memory with the configured model, "
                "or set [embedding] model back to the one the store was built with.",
            )

    # -- writes ----------------------------------------------------------------------------------
    def add(self, space: str, items: Sequence[tuple[NewMemory, Vector]], model_id: str) -> list[str]:
        """Write new memories atomically (see the module docstring). Returns their ids."""
        return self.apply(space, items, model_id)

    def apply(
        self,
        space: str,
        items: Sequence[tuple[NewMemory, Vector]],
        model_id: str,
        *,
        delete: Sequence[Memory] = (),
        source: tuple[str, str | None] | None = None,
        succeeds: Succession | None = None,
        links: Sequence[tuple[str, str]] = (),
        approves: str | None = None,
    ) -> list[str]:
        """One atomic change: add ``items``, delete ``delete`` outright (superseded chunks of a file),
        and record ``source`` = (name, content hash) as applied (hash None: the source is gone). With
        one item, ``succeeds`` retires what it replaces and ``links`` = (target id, kind) link it, in
        the same transaction; ``approves`` names the pending fact it is (store/review.py), whose id it takes
        and which leaves the review queue in that transaction too. Returns the new ids."""
        if not items and not delete and source is None:
            return []
        now = time.time()
        ids = [approves] if approves is not None else [new_id() for _ in items]
        rows = [
            (
                mid,
                m.space or space,
                m.text,
                m.kind.value,
                m.source,
                m.position,
                m.recorded_at if m.recorded_at is not None else now,
                m.event_at,
                json.dumps(list(flag_tags(m.text, m.tags, third_person=m.kind in _OWN_STYLE)), ensure_ascii=False),
                int(m.pinned),
                m.importance,
                content_hash(m.text),
                model_id,
                vec_to_blob(v),
                m.keys,
                m.valid_from,
            )
            for mid, (m, v) in zip(ids, items)
        ]
        gone = [m.id for m in delete]
        with self.write_lock():
            with self.catalog.transaction() as db:
                if gone:
                    self.catalog.fts_remove(db, [m.id for m in delete if m.state == "active"])
                    self._delete_rows(db, gone)
                    db.executemany("INSERT OR IGNORE INTO tombstones(id, space) VALUES(?, ?)", [(m.id, m.space) for m in delete])
                    self.catalog.audit(db, now, [(i, "delete", {"reason": "superseded"}) for i in gone])
                db.executemany(
                    "INSERT INTO memories(id, space, text, kind, source, position, recorded_at, event_at, tags, "
                    "pinned, importance, content_hash, embed_model, embedding, keys, valid_from, vec_state) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending_add')",
                    rows,
                )
                self.catalog.fts_add(db, ids)
                self.catalog.audit(
                    db,
                    now,
                    [
                        (mid, "add", {"space": m.space or space, "kind": m.kind.value, "source": m.source})
                        for mid, (m, _) in zip(ids, items)
                    ],
                )
                if succeeds is not None:
                    self._retire(db, succeeds.old, ids[0], succeeds.valid_until, succeeds.reason, now)
                for dst, kind in links:
                    self._link(db, ids[0], dst, kind, now)
                if approves is not None:
                    db.execute("DELETE FROM review_pending WHERE id = ?", (approves,))
                if source is not None and source[1] is None:
                    db.execute("DELETE FROM sources WHERE space = ? AND source = ?", (space, source[0]))
                elif source is not None:
                    db.execute(
                        "INSERT INTO sources(space, source, hash, applied_at) VALUES(?, ?, ?, ?) "
                        "ON CONFLICT(space, source) DO UPDATE SET hash = excluded.hash, applied_at = excluded.applied_at",
                        (space, source[0], source[1], now),
                    )
            try:
                for sp in dict.fromkeys(m.space or space for m, _ in items):
                    part = [(mid, m, v) for mid, (m, v) in zip(ids, items) if (m.space or space) == sp]
                    self.index.upsert(
                        sp,
                        [mid for mid, _, _ in part],
                        [v for _, _, v in part],
                        [
                            VectorMeta(m.kind.value, m.event_at if m.event_at is not None else (m.recorded_at or now))
                            for _, m, _ in part
                        ],
                    )
            except BaseException:
                if not gone and source is None and succeeds is None and approves is None:
                    self._undo_add(ids)  # nothing else changed: take the rows back out
                raise  # otherwise the rows stay pending and the next open replays them
            with self.catalog.transaction() as db:
                self.catalog.set_vec_state(db, ids, "indexed")
            self._drop_tombstones()
        return ids

    def _delete_rows(self, db: Any, ids: Sequence[str]) -> None:
        for part in chunks(ids):
            q = marks(len(part))
            db.execute(f"DELETE FROM memories WHERE id IN ({q})", part)
            # Keep that a deletion happened (an id and a time), nothing of what was said.
            db.execute(f"DELETE FROM audit WHERE memory_id IN ({q})", part)
            db.execute(f"DELETE FROM links WHERE src IN ({q}) OR dst IN ({q})", part + part)

    def _drop_tombstones(self) -> None:
        tombs = self.catalog.tombstones()
        if not tombs:
            return
        for space in {sp for _, sp in tombs}:
            self.index.delete(space, [i for i, sp in tombs if sp == space])
        with self.catalog.transaction() as db:
            db.executemany("DELETE FROM tombstones WHERE id = ?", [(i,) for i, _ in tombs])

    def _undo_add(self, ids: Sequence[str]) -> None:
        with self.catalog.transaction() as db:
            self.catalog.fts_remove(db, ids)
            self._delete_rows(db, ids)

    def trash(self, memories: Sequence[Memory], reason: str = "forget") -> None:
        ids = [m.id for m in memories if m.state == "active"]
        if not ids:
            return
        now = time.time()
        with self.write_lock():
            with self.catalog.transaction() as db:
                self.catalog.fts_remove(db, ids)
                for part in chunks(ids):
                    db.execute(
                        "UPDATE memories SET state = 'trashed', trashed_at = ?, vec_state = 'pending_remove' "
                        f"WHERE id IN ({marks(len(part))})",
                        [now, *part],
                    )
                self.catalog.audit(db, now, [(i, "trash", {"reason": reason}) for i in ids])
            for space in {m.space for m in memories}:
                self.index.delete(space, [m.id for m in memories if m.space == space and m.state == "active"])
            with self.catalog.transaction() as db:
                self.catalog.set_vec_state(db, ids, "absent")

    def restore(self, memories: Sequence[Memory]) -> None:
        ids = [m.id for m in memories if m.state == "trashed"]
        if not ids:
            return
        now = time.time()
        with self.write_lock():
            with self.catalog.transaction() as db:
                for part in chunks(ids):
                    db.execute(
                        "UPDATE memories SET state = 'active', trashed_at = NULL, vec_state = 'pending_add' "
                        f"WHERE id IN ({marks(len(part))})",
                        part,
                    )
                self.catalog.fts_add(db, ids)
                self.catalog.audit(db, now, [(i, "restore", {}) for i in ids])
            self.replay_pending()

    def purge(self, memories: Sequence[Memory]) -> list[str]:
        """Erase every trace of these memories. Returns, in words, what was removed."""
        if not memories:
            return []
        ids = [m.id for m in memories]
        with self.write_lock():
            with self.catalog.transaction() as db:
                self.catalog.fts_remove(db, [m.id for m in memories if m.state == "active"])
                self._delete_rows(db, ids)
                db.executemany("INSERT OR IGNORE INTO tombstones(id, space) VALUES(?, ?)", [(m.id, m.space) for m in memories])
                self.catalog.audit(db, time.time(), [(i, "purge", {}) for i in ids])
                self._purge_from_keys(db, memories)
                # A quarantined LLM output may quote what is being purged: it goes too. By row number, not
                # by text: the statement is replayed on other machines (server mode) and must not carry it.
                quoting = {
                    r[0]
                    for m in memories
                    if m.text
                    for r in db.execute("SELECT seq FROM quarantine WHERE instr(raw, ?) > 0", (m.text,))
                }
                db.executemany("DELETE FROM quarantine WHERE seq = ?", [(q,) for q in sorted(quoting)])
                # Rewrite the keyword index so deleted terms do not survive in its old segments.
                db.execute("INSERT INTO memory_fts(memory_fts) VALUES('optimize')")
            self._drop_tombstones()
            if self.catalog.journal is not None:  # server mode: the text goes from the server's log too
                self.catalog.journal.scrub(memories)
            # Rebuild the file and empty the write-ahead log: no old page keeps the text.
            self.catalog.db.execute("VACUUM")
            self.catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return ["text and metadata", "embedding", "keyword index entry", "vector index entry", "audit details", "links"]

    def _purge_from_keys(self, db: Any, memories: Sequence[Memory]) -> None:
        """Conversation turns carry their neighbours' text as extra keys (ingest): a purged turn's text
        must go from there too, or it survives in the catalog and the keyword index. Only its own
        conversation (same source) is touched; the neighbours' keyword entries are rewritten, their
        vectors (computed from those keys) are left as they are."""
        for m in memories:
            if not m.text:
                continue
            near = db.execute(
                "SELECT id, state, keys FROM memories WHERE source = ? AND instr(keys, ?) > 0", (m.source, m.text)
            ).fetchall()
            if not near:
                continue
            active = [r[0] for r in near if r[1] == "active"]
            self.catalog.fts_remove(db, active)  # with the old keys, before they change
            # The new keys themselves, not "replace(keys, TEXT, '')": the statement is replayed on other
            # machines (server mode) and must neither carry the text nor depend on it.
            db.executemany(
                "UPDATE memories SET keys = ? WHERE id = ?",
                [(r[2].replace(m.text, "").replace("  ", " ").strip(" "), r[0]) for r in near],
            )
            self.catalog.fts_add(db, active)

    def retire(self, old: Memory, successor: str, *, valid_until: float | None, reason: str) -> None:
        """Close ``old`` in favour of ``successor`` without deleting it: a contradicted fact gets the time
        it stopped being true (``valid_until``), a refined one just stops being current. Both stay
        searchable as history (recall --as-of, memcli history)."""
        with self.write_lock(), self.catalog.transaction() as db:
            self._retire(db, old, successor, valid_until, reason, time.time())

    def _retire(self, db: Any, old: Memory, successor: str, valid_until: float | None, reason: str, now: float) -> None:
        db.execute(
            "UPDATE memories SET retired_at = ?, valid_until = coalesce(?, valid_until), superseded_by = ? WHERE id = ?",
            (now, valid_until, successor, old.id),
        )
        self._link(db, successor, old.id, "supersedes" if reason == "supersede" else "refines", now)
        self.catalog.audit(db, now, [(old.id, reason, {"by": successor, "valid_until": valid_until})])

    def link(self, src: str, dst: str, kind: str) -> None:
        self.link_all([(src, dst, kind)])

    def link_all(self, links: Sequence[tuple[str, str, str]]) -> int:
        """Record (src, dst, kind) links in one transaction; one that exists already is kept. Returns how many were new."""
        now = time.time()
        with self.write_lock(), self.catalog.transaction() as db:
            return self.catalog.add_links(db, [(s, d, k, now) for s, d, k in links])

    def _link(self, db: Any, src: str, dst: str, kind: str, at: float) -> None:
        self.catalog.add_links(db, [(src, dst, kind, at)])

    def quarantine(self, operation: str, source: str, error: str, raw: str) -> None:
        """Keep an LLM output that failed to parse or validate, for `memcli doctor`; nothing is applied."""
        with self.catalog.transaction() as db:
            db.execute(
                "INSERT INTO quarantine(at, operation, source, error, raw) VALUES(?, ?, ?, ?, ?)",
                (time.time(), operation, source, error[:2000], raw[:20000]),
            )

    def touch(self, ids: Sequence[str]) -> None:
        """Count a recall (feeds forgetting). Cheap and lock-free: one small SQLite transaction."""
        if not ids:
            return
        now = time.time()
        try:
            with self.catalog.transaction() as db:
                db.execute(
                    "UPDATE memories SET access_count = access_count + 1, last_access = ? "
                    f"WHERE id IN ({','.join('?' * len(ids))})",
                    [now, *ids],
                )
        except Exception as e:  # a busy store must not fail a read
            if "locked" not in str(e):
                raise

    # -- reads -----------------------------------------------------------------------------------
    def find(self, ref: str, space: str | None = None) -> Memory:
        found = self.catalog.resolve_id(ref.lower())
        if space is not None:
            found = [m for m in found if m.space == space]
        if not found:
            raise MemcliFailure(
                f"no memory with id {ref!r}" + (f" in space {space!r}" if space else ""),
                hint="List ids with `memcli list` (or `memcli list --trash`).",
                code=ExitCode.NOT_FOUND,
            )
        if len(found) > 1:
            raise usage_error(f"id {ref!r} is ambiguous", hint="Give more characters of the id.")
        return found[0]
