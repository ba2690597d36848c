"""Typed records the services return. Frozen: a result is a fact about one moment of the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    NOTE = "note"  # a chunk of an ingested document
    EPISODE = "episode"  # a conversation turn or an event
    FACT = "fact"  # a semantic fact about the user or the world
    SUMMARY = "summary"
    PROFILE = "profile"


# The tag the store gives a memory whose text reads as instructions to the assistant (prompt injection,
# planted "facts", terminal escapes: memcli/text/intent.py). It stays data: quoted in prompts, never a
# source of facts; `memcli doctor` counts such memories and `recall --explain` marks them.
INSTRUCTION_LIKE = "instruction-like"


def ts(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat(timespec="seconds")


def from_epoch(x: float | None) -> datetime | None:
    return None if x is None else datetime.fromtimestamp(x, tz=UTC)


@dataclass(frozen=True)
class Memory:
    id: str
    space: str
    text: str
    kind: Kind
    source: str  # "cli", "file:PATH", "chat:SESSION", ...
    position: int | None  # chunk index within its source, when it has one
    recorded_at: datetime  # when memcli learned it
    event_at: datetime | None  # when the thing it describes happened, if known
    tags: tuple[str, ...]
    pinned: bool
    importance: float
    access_count: int
    last_access: datetime | None
    content_hash: str
    embed_model: str
    keys: str  # extra key text indexed for keyword search (heading path, date in words, ...)
    state: str  # "active" or "trashed"
    # Temporal truth: when it became / stopped being true, and when memcli retired it (superseded by
    # a newer fact or refined into a better one). A retired memory is history, not what is true now.
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    retired_at: datetime | None = None
    superseded_by: str | None = None

    @property
    def current(self) -> bool:
        return self.retired_at is None

    @property
    def instruction_like(self) -> bool:
        """Flagged when written: its text reads as instructions to the assistant (see INSTRUCTION_LIKE)."""
        return INSTRUCTION_LIKE in self.tags

    @property
    def when(self) -> datetime:
        """The memory's time: when the thing happened if known, else when memcli learned it (the
        catalog's WHEN expression, memcli/store/schema.py)."""
        return self.event_at or self.recorded_at

    def true_at(self, at: datetime) -> bool:
        """Was this true at ``at``, as memcli knows now? (for recall --as-of)"""
        start = self.valid_from or self.event_at or self.recorded_at
        if start > at:
            return False
        if self.valid_until is not None:
            return self.valid_until > at
        # Retired without an end of validity (refined, merged): the successor says the same, better.
        return self.retired_at is None or self.retired_at > at

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["tags"] = list(self.tags)
        for k in ("recorded_at", "event_at", "last_access", "valid_from", "valid_until", "retired_at"):
            d[k] = ts(d[k])
        return d


@dataclass(frozen=True)
class AddResult:
    added: tuple[Memory, ...]
    duplicates: tuple[Memory, ...]  # already remembered (same text in this space): nothing written
    chunked: bool  # the text was longer than the model takes and was split

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [m.to_json() for m in self.added],
            "duplicates": [m.id for m in self.duplicates],
            "chunked": self.chunked,
        }


@dataclass(frozen=True)
class Linked:
    """A memory one link away from a hit (``recall --links``), and why it is there."""

    memory: Memory
    kind: str  # the link's kind: related, supersedes, refines, summarises, derived_from, ...
    outgoing: bool  # True: the hit links to it; False: it links to the hit
    reason: str  # in words, for --explain ("shared tags: garden; similarity 0.71")

    def to_json(self) -> dict[str, Any]:
        return {"memory": self.memory.to_json(), "kind": self.kind, "outgoing": self.outgoing, "reason": self.reason}


@dataclass(frozen=True)
class Hit:
    memory: Memory
    rank: int  # 1-based fused rank
    score: float  # fused score (higher is better)
    dense_rank: int | None
    dense_similarity: float | None  # cosine similarity of query and memory
    keyword_rank: int | None
    keyword_score: float | None  # BM25 (higher is better)
    recency: float  # 0..1, 1 = now
    context: tuple[Memory, ...] = ()  # neighbours in the same document/conversation (--context N), in order
    linked: tuple[Linked, ...] = ()  # memories one link away (--links), not themselves ranked

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("memory", "context", "linked")}
        d["memory"] = self.memory.to_json()
        d["instruction_like"] = self.memory.instruction_like
        d["context"] = [m.to_json() for m in self.context]
        d["linked"] = [x.to_json() for x in self.linked]
        return d


@dataclass(frozen=True)
class Degraded:
    """A leg of recall that could not be used, so the answer came from the other one."""

    leg: str  # "dense" (meaning: the embedding model and the vector index) or "keyword" (the FTS5 index)
    reason: str  # what was missing and why, in words ("searched by keywords only: ...")
    hint: str = ""  # what to do about it

    def to_json(self) -> dict[str, Any]:
        return {"leg": self.leg, "reason": self.reason, "hint": self.hint}


@dataclass(frozen=True)
class RecallResult:
    query: str
    space: str
    hits: tuple[Hit, ...]
    filters: dict[str, Any] = field(default_factory=dict)
    # Abstention: nothing found is clearly relevant (best dense similarity below the calibrated
    # threshold, and no keyword hit). The hits are still there for whoever wants to look.
    abstained: bool = False
    confidence: float = 0.0  # best dense similarity among the candidates
    time_window: str = ""  # the window or preference read from the query, in words ("" if none)
    degraded: tuple[Degraded, ...] = ()  # legs that were unavailable: the hits come from the others

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "space": self.space,
            "filters": self.filters,
            "abstained": self.abstained,
            "confidence": self.confidence,
            "time_window": self.time_window,
            "degraded": [d.to_json() for d in self.degraded],
            "hits": [h.to_json() for h in self.hits],
        }


@dataclass(frozen=True)
class ForgetResult:
    memories: tuple[Memory, ...]
    purged: bool
    dry_run: bool
    removed: tuple[str, ...] = ()  # what a purge erased, in words
    proof: PurgeProof | None = None  # a purge: where it scrubbed, and the scan of memcli's files

    def to_json(self) -> dict[str, Any]:
        return {
            "ids": [m.id for m in self.memories],
            "purged": self.purged,
            "dry_run": self.dry_run,
            "removed": list(self.removed),
            "proof": None if self.proof is None else self.proof.to_json(),
        }


@dataclass(frozen=True)
class Page:
    memories: tuple[Memory, ...]
    total: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "offset": self.offset, "memories": [m.to_json() for m in self.memories]}


@dataclass(frozen=True)
class Stats:
    space: str
    spaces: dict[str, int]  # active memories per space
    kinds: dict[str, int]  # active memories per kind in this space
    trashed: int
    pinned: int
    embed_model: str | None
    dim: int | None
    db_bytes: int
    vector_bytes: int
    oldest: datetime | None
    newest: datetime | None
    store: str = "embedded"  # or the Chroma server's URL (server mode: the catalog is a local cache)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["oldest"], d["newest"] = ts(self.oldest), ts(self.newest)
        return d


@dataclass(frozen=True)
class PurgeProof:
    """What a purge did beyond the store, and the scan that proves it: every file memcli writes
    (models aside) searched for each purged text. ``found_in`` empty is the proof."""

    scrubbed: tuple[str, ...]  # what was rewritten, in words (with paths)
    scanned_files: int
    scanned_bytes: int
    checked: int  # purged texts searched for
    unchecked: tuple[str, ...]  # "ID: why" for texts not searched (too short to tell apart, still said by a kept memory)
    found_in: tuple[str, ...]  # files still holding a purged text

    @property
    def clean(self) -> bool:
        return not self.found_in

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "scrubbed": list(self.scrubbed),
            "scanned_files": self.scanned_files,
            "scanned_bytes": self.scanned_bytes,
            "checked": self.checked,
            "unchecked": list(self.unchecked),
            "found_in": list(self.found_in),
        }
