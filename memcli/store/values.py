"""The values the store takes and gives: new memories, successions, ids, hashes, vectors as bytes."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

from memcli.backends.base import Vector
from memcli.errors import usage_error
from memcli.records import Kind, Memory

SPACE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def check_space(name: str) -> str:
    if not SPACE_RE.fullmatch(name):
        raise usage_error(
            f"invalid space name {name!r}",
            hint="Use 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit.",
        )
    return name


def content_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def vec_to_blob(v: Vector) -> bytes:
    import numpy as np

    return np.asarray(v, dtype=np.float32).tobytes()


def blob_to_vec(b: bytes) -> Vector:
    import numpy as np

    return [float(x) for x in np.frombuffer(b, dtype=np.float32)]


@dataclass(frozen=True)
class Succession:
    """What a new memory replaces, applied in the same transaction as its insert so that a crash can
    never leave both the old and the new fact current: ``old`` is closed in favour of the first new
    memory (``reason`` supersede | refine; ``valid_until`` the time a contradicted fact stopped being
    true)."""

    old: Memory
    valid_until: float | None
    reason: str


@dataclass(frozen=True)
class NewMemory:
    text: str
    kind: Kind = Kind.NOTE
    source: str = "cli"
    position: int | None = None
    event_at: float | None = None
    tags: tuple[str, ...] = ()
    pinned: bool = False
    importance: float = 0.5
    keys: str = ""
    recorded_at: float | None = None  # default: now
    space: str | None = None  # default: the space the batch is written to
    valid_from: float | None = None  # when it became true, if that differs from event_at


def embed_input(text: str, keys: str) -> str:
    """What the dense vector of a memory is computed from: its text, then its extra keys (heading path,
    date in words, speaker, neighbouring turns...). Keys come last so truncation cuts them first."""
    return f"{text}\n{keys}" if keys else text
