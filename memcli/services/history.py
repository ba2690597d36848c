"""`memcli history ID`: what happened to a memory (the audit log), what it is linked to, and its
temporal truth (when it was true, when memcli retired it and for which successor).

A purged memory has no row left, only its ``purge`` audit entry: its history is still shown (by full
id or a unique prefix of it), with no memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memcli.context import Context
from memcli.errors import ExitCode, MemcliFailure, usage_error
from memcli.records import Memory, ts


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    action: str  # add, trash, restore, supersede, refine, purge, delete, merge, prune's "trash", ...
    detail: dict[str, Any]  # e.g. {"by": SUCCESSOR, "valid_until": EPOCH} for supersede

    def to_json(self) -> dict[str, Any]:
        return {"at": ts(self.at), "action": self.action, "detail": self.detail}


@dataclass(frozen=True)
class LinkInfo:
    kind: str  # supersedes, refines, derived_from, summarises, related, merged_from
    outgoing: bool  # True: this memory -kind-> other; False: other -kind-> this memory
    other: str  # the other memory's id
    other_text: str | None  # None when the other memory is gone
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "direction": "out" if self.outgoing else "in",
            "other": self.other,
            "other_text": self.other_text,
            "at": ts(self.at),
        }


@dataclass(frozen=True)
class MemoryHistory:
    id: str
    memory: Memory | None  # None: purged (only its audit entries remain)
    events: tuple[AuditEvent, ...]  # oldest first
    links: tuple[LinkInfo, ...]

    def to_json(self) -> dict[str, Any]:
        m = self.memory
        temporal = {
            "recorded_at": ts(m.recorded_at) if m else None,
            "event_at": ts(m.event_at) if m else None,
            "valid_from": ts(m.valid_from) if m else None,
            "valid_until": ts(m.valid_until) if m else None,
            "retired_at": ts(m.retired_at) if m else None,
            "superseded_by": m.superseded_by if m else None,
            "current": m.current if m else False,
        }
        return {
            "id": self.id,
            "memory": m.to_json() if m else None,
            "purged": m is None,
            "temporal": temporal,
            "events": [e.to_json() for e in self.events],
            "links": [link.to_json() for link in self.links],
        }


def history(ctx: Context, ref: str) -> MemoryHistory:
    store = ctx.store
    cat = store.catalog
    memory: Memory | None
    try:
        memory = found = store.find(ref)
        mid = found.id
    except MemcliFailure as e:
        if e.code != ExitCode.NOT_FOUND:
            raise
        mid = _purged_id(ctx, ref, e)
        memory = None
    events = tuple(AuditEvent(_dt(at), action, detail) for at, action, detail in cat.history(mid))
    rows = cat.links_with_time(mid)
    others = cat.by_ids({dst if src == mid else src for src, dst, _, _ in rows})
    links = []
    for src, dst, kind, at in rows:
        other = dst if src == mid else src
        o = others.get(other)
        links.append(LinkInfo(kind, src == mid, other, o.text if o else None, _dt(at)))
    return MemoryHistory(mid, memory, events, tuple(links))


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _purged_id(ctx: Context, ref: str, missing: MemcliFailure) -> str:
    """The id of a purged memory whose audit entries start with ``ref``."""
    ids = ctx.store.catalog.audited_ids(ref.lower())
    if not ids:
        raise missing
    if len(ids) > 1:
        raise usage_error(f"id {ref!r} is ambiguous", hint="Give more characters of the id.")
    return ids[0]
