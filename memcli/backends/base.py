"""The contracts memcli's services rely on. Implementations live beside this module.

Invariants every implementation keeps:

* ``Embedder``: vectors are L2-normalised lists of ``dim`` floats; the same text always gives the same
  vector; ``model_id`` names the model *and* its weights, so a store can refuse vectors from another.
* ``VectorIndex``: an index, not the truth. It holds ids and vectors (plus the few fields it filters
  on), never the memory text. Every call is idempotent (upsert/delete of what is already there is a
  no-op), so the store can replay an interrupted write.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Vector = list[float]


class Embedder(Protocol):
    model_id: str
    dim: int
    max_tokens: int  # longest text (in tokens) the model embeds well

    def embed_documents(self, texts: Sequence[str]) -> list[Vector]: ...

    def embed_query(self, text: str) -> Vector: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True)
class VectorMeta:
    kind: str
    when: float  # epoch seconds of the event (or of recording when unknown): for time filters


@dataclass(frozen=True)
class VectorHit:
    id: str
    similarity: float  # cosine similarity, 1 = same direction


class VectorIndex(Protocol):
    def upsert(self, space: str, ids: Sequence[str], vectors: Sequence[Vector], metas: Sequence[VectorMeta]) -> None: ...

    def delete(self, space: str, ids: Sequence[str]) -> None: ...

    def query(
        self,
        space: str,
        vector: Vector,
        n: int,
        *,
        kinds: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        ids: Sequence[str] | None = None,  # restrict to these ids (the filters are then ignored)
        overfetch_only: bool = False,  # filters: only what an unfiltered over-fetch finds (maybe < n)
    ) -> list[VectorHit]: ...

    def count(self, space: str) -> int: ...

    def ids(self, space: str) -> set[str]: ...

    def drop_space(self, space: str) -> None: ...

    def disk_bytes(self) -> int: ...


Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


class ChatModel(Protocol):
    """A chat model. ``stream`` sets ``last_finish`` when its reply is exhausted: "stop" when the model
    ended its turn itself, "length" when ``max_tokens`` cut it, None when the backend cannot tell.
    ``n_params`` (None when unknown, e.g. behind a server) picks sampling presets for small models."""

    model_id: str  # what the model is, for reports ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "server:NAME")
    n_ctx: int  # context window in tokens: the prompt plus the reply must fit
    n_params: int | None
    last_finish: str | None

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.7,
        top_p: float = 1.0,
        repeat_penalty: float = 1.0,
    ) -> Generator[str, None, None]: ...

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
    ) -> str: ...

    def close(self) -> None: ...
