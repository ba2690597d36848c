"""What `memcli consolidate` asks of the catalog, in its own words (memcli/services/consolidate/).

Reads: the audit log as a change feed, current memories with their vectors, consolidate's summaries,
the newest profile. Writes: a merge of duplicates (one transaction, through the store's write-protocol
pieces), and intents: a change that takes several transactions (a new summary, then its links and the
retirement of what it replaces) is written down first, so a run killed in between is completed by the
next one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from memcli.records import Memory
from memcli.store.core import MemoryStore
from memcli.store.schema import COLUMNS, WHEN, chunks, marks, row_to_memory
from memcli.store.values import content_hash

INTENT = "consolidate:intent"  # meta key of the one change in flight
_M_COLUMNS = ", ".join("m." + c.strip() for c in COLUMNS.split(","))


@dataclass(frozen=True)
class Intent:
    """A new memory's follow-up: ``links`` = (kind, target id) from it, ``replaces`` = (id, "refine" |
    "trash") to retire or trash once it exists; ``note`` = what consolidate did ({"op": ...})."""

    space: str
    hash: str  # content hash of the new memory's text: how the next run finds it
    at: float  # when the intent was written: only a memory recorded since is its result
    links: tuple[tuple[str, str], ...] = ()
    replaces: tuple[tuple[str, str], ...] = ()
    note: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls, space: str, text: str, *, links: Sequence[tuple[str, str]], replaces: Sequence[tuple[str, str]], note: dict[str, Any]
    ) -> Intent:
        """The intent to add ``text`` to ``space``, written now."""
        return cls(space, content_hash(text), time.time(), tuple(links), tuple(replaces), note)

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "hash": self.hash,
            "at": self.at,
            "links": [list(x) for x in self.links],
            "replaces": [list(x) for x in self.replaces],
            "note": self.note,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Intent:
        return cls(
            d["space"], d["hash"], float(d["at"]), tuple((k, t) for k, t in d["links"]),
            tuple((i, how) for i, how in d["replaces"]), d.get("note", {}),
        )  # fmt: skip


class ConsolidationStore:
    """The catalog as consolidate's steps ask it: its reads, and the writes only consolidate makes (a merge, intents)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.cat = store.catalog

    # -- the change feed -------------------------------------------------------------------------
    def audit_high_water(self) -> int:
        """The newest audit seq (0 for an empty log): what a feed reads up to."""
        return int(self.cat.db.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0])

    def changed(
        self,
        space: str,
        kinds: Sequence[str],
        *,
        upto: int,
        after: tuple[int, float],
        since: float | None,
        actions: Sequence[str] | None,
        active_only: bool,
    ) -> list[tuple[int, Memory]]:
        """(latest seq, memory) of the memories of ``kinds`` with audit entries up to seq ``upto`` that
        are newer than ``after`` = (seq, time) — or, with ``since``, timed at or after it — oldest change
        first. ``actions``: only entries of these actions count (None: any); ``active_only``: only
        active, current memories."""
        q = (
            f"SELECT max(a.seq), {_M_COLUMNS} FROM audit a JOIN memories m ON m.id = a.memory_id "
            f"WHERE a.seq <= ? AND m.space = ? AND m.kind IN ({marks(len(kinds))})"
        )
        args: list[Any] = [upto, space, *kinds]
        if since is not None:
            q += " AND a.at >= ?"
            args.append(since)
        else:
            # seq alone is not enough: a purge deletes audit rows, and if they were the newest, SQLite
            # hands their numbers out again; rows written after the cursor was taken are newer anyway.
            # (A row timed before it but committed after has a seq above it.)
            q += " AND (a.seq > ? OR a.at > ?)"
            args += list(after)
        if actions is not None:
            q += f" AND a.action IN ({marks(len(actions))})"
            args += list(actions)
        if active_only:
            q += " AND m.state = 'active' AND m.retired_at IS NULL"
        rows = self.cat.db.execute(q + " GROUP BY m.id ORDER BY 1", args).fetchall()
        return [(int(r[0]), row_to_memory(r[1:])) for r in rows]

    # -- reads -----------------------------------------------------------------------------------
    def current_with_vectors(self, space: str, kind: str) -> list[tuple[Memory, bytes]]:
        """Every active, current memory of ``kind`` with its stored embedding (float32 bytes)."""
        q = f"SELECT {COLUMNS}, embedding FROM memories WHERE space = ? AND kind = ? AND state = 'active' AND retired_at IS NULL"
        return [(row_to_memory(r[:-1]), r[-1]) for r in self.cat.db.execute(q, (space, kind))]

    def merged_ids(self) -> set[str]:
        """Ids merged into another memory as duplicates (the ``merged_from`` links' targets)."""
        return {r[0] for r in self.cat.db.execute("SELECT dst FROM links WHERE kind = 'merged_from'")}

    def link_targets(self, src: str, kind: str) -> set[str]:
        return {r[0] for r in self.cat.db.execute("SELECT dst FROM links WHERE src = ? AND kind = ?", (src, kind))}

    def missing_links(self, pairs: Sequence[tuple[str, str]], kind: str) -> list[tuple[str, str]]:
        """The (src, dst) pairs not linked by ``kind`` yet."""
        q = "SELECT 1 FROM links WHERE src = ? AND dst = ? AND kind = ?"
        return [p for p in pairs if self.cat.db.execute(q, (*p, kind)).fetchone() is None]

    def summaries_with_tags(self, space: str, tags: Sequence[str]) -> list[Memory]:
        """Current summaries consolidate wrote with all of ``tags``, newest first."""
        q = (
            f"SELECT {COLUMNS} FROM memories m WHERE space = ? AND kind = 'summary' AND state = 'active' "
            "AND retired_at IS NULL AND source LIKE 'consolidate:%' "
            + "".join(" AND EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)" for _ in tags)
            + " ORDER BY recorded_at DESC, rowid DESC"
        )
        return [row_to_memory(r) for r in self.cat.db.execute(q, [space, *tags])]

    def summarised_count(self, summary_id: str) -> int | None:
        """How many memories the summary was written from (its latest ``summarise`` audit entry), or
        None when it has none."""
        row = self.cat.db.execute(
            "SELECT detail FROM audit WHERE memory_id = ? AND action = 'summarise' ORDER BY seq DESC LIMIT 1", (summary_id,)
        ).fetchone()
        return None if row is None else int(json.loads(row[0]).get("sources", 0))

    def episodes_between(self, space: str, start: float, end: float) -> list[Memory]:
        """Active, current episodes whose time is in [start, end), in conversation order."""
        q = (
            f"SELECT {COLUMNS} FROM memories WHERE space = ? AND state = 'active' AND retired_at IS NULL AND kind = 'episode' "
            f"AND {WHEN} >= ? AND {WHEN} < ? ORDER BY {WHEN}, source, position"
        )
        return [row_to_memory(r) for r in self.cat.db.execute(q, (space, start, end))]

    def newest_profile(self, space: str) -> Memory | None:
        """The profile chat uses (services/profile.py picks the same one)."""
        q = (
            f"SELECT {COLUMNS} FROM memories WHERE space = ? AND kind = 'profile' AND state = 'active' AND retired_at IS NULL "
            f"ORDER BY {WHEN} DESC, rowid DESC LIMIT 1"
        )
        r = self.cat.db.execute(q, (space,)).fetchone()
        return None if r is None else row_to_memory(r)

    def recent_user_messages(self, space: str, n: int) -> list[Memory]:
        """The ``n`` newest things the user said in conversation, oldest first."""
        q = (
            f"SELECT {COLUMNS} FROM memories WHERE space = ? AND kind = 'episode' AND state = 'active' "
            f"AND text LIKE 'user: %' ORDER BY {WHEN} DESC LIMIT ?"
        )
        return [row_to_memory(r) for r in self.cat.db.execute(q, (space, n))][::-1]

    # -- merge -----------------------------------------------------------------------------------
    def merge(self, keep_id: str, merged_ids: Sequence[str]) -> bool:
        """One transaction: the survivor takes the copies' tags, earliest times and recall counts, links
        to each (``merged_from``, and their other links), and the copies go to the trash. False: nothing
        was done, the memories changed since they were read (a chat wrote or forgot meanwhile)."""
        store, cat = self.store, self.cat
        with store.write_lock():
            fresh = cat.by_ids([keep_id, *merged_ids])
            keep = fresh.get(keep_id)
            copies = [fresh[i] for i in merged_ids if i in fresh and fresh[i].state == "active" and fresh[i].current]
            if keep is None or keep.state != "active" or not keep.current or not copies:
                return False
            group = [keep, *copies]
            events = [x.event_at.timestamp() for x in group if x.event_at]
            valid = [x.valid_from.timestamp() for x in group if x.valid_from]
            last = [x.last_access.timestamp() for x in group if x.last_access]
            event_at = min(events) if events else None
            ids = [x.id for x in copies]
            members = {x.id for x in group}
            now = time.time()
            with cat.transaction() as db:
                db.execute(
                    "UPDATE memories SET tags = ?, event_at = ?, valid_from = ?, access_count = ?, last_access = ?, "
                    "importance = ?, pinned = ? WHERE id = ?",
                    (
                        json.dumps(list(dict.fromkeys(t for x in group for t in x.tags)), ensure_ascii=False),
                        event_at,
                        min(valid) if valid else None,
                        sum(x.access_count for x in group),
                        max(last) if last else None,
                        max(x.importance for x in group),
                        int(any(x.pinned for x in group)),
                        keep.id,
                    ),
                )
                if event_at != (keep.event_at.timestamp() if keep.event_at else None):
                    cat.set_vec_state(db, [keep.id], "pending_add")  # the index filters on the event time: re-file it
                cat.fts_remove(db, ids)
                for part in chunks(ids):
                    db.execute(
                        f"UPDATE memories SET state = 'trashed', trashed_at = ? WHERE id IN ({marks(len(part))})", [now, *part]
                    )
                cat.set_vec_state(db, ids, "pending_remove")
                links = [(keep.id, i, "merged_from", now) for i in ids]
                for i in ids:
                    for src, kind, dst in cat.links(i):  # keep provenance: the survivor inherits the copy's links
                        src2, dst2 = (keep.id if src == i else src), (keep.id if dst == i else dst)
                        if kind != "merged_from" and src2 != dst2 and not (src2 in members and dst2 in members):
                            links.append((src2, dst2, kind, now))
                cat.add_links(db, links)
                cat.audit(
                    db,
                    now,
                    [(keep.id, "merge", {"merged": ids, "reason": "duplicate"})]
                    + [(i, "trash", {"reason": "merged", "into": keep.id}) for i in ids],
                )
            store.replay_pending()  # the store's own replay: drop the copies' vectors, re-file the survivor's
        return True

    # -- intents ---------------------------------------------------------------------------------
    def write_intent(self, intent: Intent) -> None:
        """Write ``intent`` down before the memory it follows up is added."""
        self.recover_intent()  # one intent at a time: finish one an earlier failure in this run left
        with self.cat.transaction() as db:
            self.cat.set_meta(db, INTENT, json.dumps(intent.to_json()))

    def complete_intent(self, intent: Intent, mid: str) -> None:
        """Link the new memory ``mid`` and retire/trash what it replaces; every part is idempotent."""
        store, cat = self.store, self.cat
        now = time.time()
        with store.write_lock():
            with cat.transaction() as db:
                cat.add_links(db, [(mid, dst, kind, now) for kind, dst in intent.links])
                note = intent.note
                if note.get("op") == "summarise":  # how many it summarised: tells a later purge of one of them
                    cat.audit(db, now, [(mid, "summarise", {"period": note.get("period"), "sources": note.get("sources", 0)})])
            old = cat.by_ids(old_id for old_id, _ in intent.replaces)
            for old_id, how in intent.replaces:
                m = old.get(old_id)
                if m is None or m.id == mid or m.state != "active":
                    continue
                if how == "trash":
                    store.trash([m], reason="replaced: what it summarised was forgotten")
                elif m.current:
                    store.retire(m, mid, valid_until=None, reason="refine")
            self._clear_intent()

    def recover_intent(self) -> int:
        """Finish the change a killed run left between its transactions (or drop it if its memory never
        got written: the step does it again). Returns how many were completed (0 or 1)."""
        raw = self.cat.meta(INTENT)
        if raw is None:
            return 0
        intent = Intent.from_json(json.loads(raw))
        # Only a memory written after the intent is its result (an older one may share the text).
        row = self.cat.db.execute(
            "SELECT id FROM memories WHERE space = ? AND content_hash = ? AND state = 'active' AND recorded_at >= ? "
            "ORDER BY rowid DESC LIMIT 1",
            (intent.space, intent.hash, intent.at - 1.0),
        ).fetchone()
        if row is None:
            self._clear_intent()
            return 0
        self.complete_intent(intent, row[0])
        return 1

    def _clear_intent(self) -> None:
        with self.cat.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (INTENT,))
