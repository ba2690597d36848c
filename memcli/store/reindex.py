"""Re-embedding every memory with another model, resumable: the catalog says which rows are done
(their ``embed_model``) and the ``embed_model`` meta key says a reindex is under way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from memcli.backends.base import Vector
from memcli.store.schema import REINDEXING
from memcli.store.values import vec_to_blob

if TYPE_CHECKING:
    from memcli.store.core import MemoryStore


def begin(store: MemoryStore, model_id: str) -> None:
    """Mark the store as mid-reindex to ``model_id``, then drop every space's vectors. Caller holds the
    write lock."""
    cat = store.catalog
    # Marked *before* the vectors go: a process killed in between leaves a store that doctor and the
    # next run recognise as an interrupted reindex, not one whose vectors vanished while the catalog
    # says they are indexed.
    with cat.transaction() as db:
        db.execute("UPDATE memories SET vec_state = 'pending_add' WHERE state = 'active' AND embed_model = ?", (model_id,))
        cat.set_meta(db, "embed_model", REINDEXING + model_id)
    # Vectors of another model (maybe another dimension) cannot share a collection.
    for space in cat.all_spaces():
        store.index.drop_space(space)


def next_batch(store: MemoryStore, model_id: str, n: int = 256) -> list[tuple[str, str, str]]:
    """Up to ``n`` memories not yet embedded with ``model_id``: (id, text, keys)."""
    q = "SELECT id, text, keys FROM memories WHERE embed_model != ? LIMIT ?"
    return [(r[0], r[1], r[2]) for r in store.catalog.db.execute(q, (model_id, n))]


def save(store: MemoryStore, model_id: str, ids: Sequence[str], vectors: Sequence[Vector]) -> None:
    """Store the new embeddings; active rows are queued for the vector index (``store.replay_pending``)."""
    with store.catalog.transaction() as db:
        db.executemany(
            "UPDATE memories SET embedding = ?, embed_model = ?, "
            "vec_state = CASE WHEN state = 'active' THEN 'pending_add' ELSE vec_state END WHERE id = ?",
            [(vec_to_blob(v), model_id, i) for i, v in zip(ids, vectors)],
        )


def finish(store: MemoryStore, model_id: str, dim: int) -> None:
    """The store now belongs to ``model_id``; the queued vectors go to the index."""
    cat = store.catalog
    with cat.transaction() as db:
        cat.set_meta(db, "embed_model", model_id)
        cat.set_meta(db, "embed_dim", str(dim))
    store.replay_pending()
