"""Re-embed every memory with the configured embedding model (after changing models)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from memcli.context import Context
from memcli.store import embed_input, vec_to_blob


@dataclass(frozen=True)
class ReindexResult:
    memories: int
    old_model: str | None
    new_model: str

    def to_json(self) -> dict[str, object]:
        return self.__dict__.copy()


def reindex(ctx: Context, progress: Callable[[int, int], None] | None = None) -> ReindexResult:
    """Re-embed in batches; each batch commits on its own, so an interrupted reindex resumes where it
    stopped (rows already carrying the new model are skipped). The store's model changes at the end."""
    emb = ctx.load_embedder(check_store=False)
    store = ctx.store
    cat = store.catalog
    old = cat.meta("embed_model")
    total = cat.db.execute("SELECT count(*) FROM memories").fetchone()[0]
    done = cat.db.execute("SELECT count(*) FROM memories WHERE embed_model = ?", (emb.model_id,)).fetchone()[0]
    with store.write_lock():
        if old is not None and old != emb.model_id:
            # Mark the store as mid-reindex *before* dropping its vectors: a process killed in between
            # then leaves a store that doctor and the next run recognise as an interrupted reindex, not
            # one whose vectors vanished while the catalog says they are indexed.
            with cat.transaction() as db:
                db.execute(
                    "UPDATE memories SET vec_state = 'pending_add' WHERE state = 'active' AND embed_model = ?", (emb.model_id,)
                )
                cat.set_meta(db, "embed_model", "reindexing:" + emb.model_id)
            # Vectors of another model (maybe another dimension) cannot share a collection.
            for space in {r[0] for r in cat.db.execute("SELECT DISTINCT space FROM memories")}:
                store.index.drop_space(space)
        while True:
            rows = cat.db.execute(
                "SELECT id, text, keys FROM memories WHERE embed_model != ? LIMIT 256", (emb.model_id,)
            ).fetchall()
            if not rows:
                break
            vectors = emb.embed_documents([embed_input(r[1], r[2]) for r in rows])
            with cat.transaction() as db:
                db.executemany(
                    "UPDATE memories SET embedding = ?, embed_model = ?, "
                    "vec_state = CASE WHEN state = 'active' THEN 'pending_add' ELSE vec_state END WHERE id = ?",
                    [(vec_to_blob(v), emb.model_id, r[0]) for r, v in zip(rows, vectors)],
                )
            done += len(rows)
            if progress:
                progress(done, total)
        with cat.transaction() as db:
            cat.set_meta(db, "embed_model", emb.model_id)
            cat.set_meta(db, "embed_dim", str(emb.dim))
        store.reconcile()

    return ReindexResult(memories=total, old_model=old, new_model=emb.model_id)
