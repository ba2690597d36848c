"""Re-embed every memory with the configured embedding model (after changing models), or move the
store to another model (``reindex --model``: the choice is recorded in the user's config file)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memcli import config
from memcli.context import Context
from memcli.store import embed_input
from memcli.store import reindex as reindexing


@dataclass(frozen=True)
class ReindexResult:
    memories: int
    old_model: str | None
    new_model: str
    config_file: str | None = None  # where --model was recorded
    env_override: str | None = None  # an environment variable that still names another model

    def to_json(self) -> dict[str, object]:
        return self.__dict__.copy()


def reindex(ctx: Context, progress: Callable[[int, int], None] | None = None, *, model: str | None = None) -> ReindexResult:
    """Re-embed in batches; each batch commits on its own, so an interrupted reindex resumes where it
    stopped (rows already carrying the new model are skipped). The store's model changes at the end.

    ``model`` (a GGUF path, or a file name in the models directory) is loaded first -- a model that
    does not load changes nothing -- then written to the user's config file *before* any memory is
    re-embedded, so an interrupted move is finished by a plain ``memcli reindex``."""
    recorded: str | None = None
    env_override: str | None = None
    if model is not None:
        p = Path(model).expanduser()
        value = str(p.resolve()) if p.exists() else model
        ctx.override("embedding", "model", value)
        emb = ctx.load_embedder(check_store=False)  # fails here, before anything changed, if it will not load
        config.set_user_value(ctx.paths.config_file, "embedding", "model", value)
        recorded = str(ctx.paths.config_file)
        name = config.env_name("embedding", "model")
        if ctx.env.get(name, value) != value:
            env_override = name
    else:
        emb = ctx.load_embedder(check_store=False)
    store = ctx.store
    cat = store.catalog
    old = cat.meta("embed_model")
    total, done = cat.count(), cat.count(embed_model=emb.model_id)
    with store.write_lock():
        if old is not None and old != emb.model_id:
            reindexing.begin(store, emb.model_id)
        while rows := reindexing.next_batch(store, emb.model_id):
            vectors = emb.embed_documents([embed_input(text, keys) for _, text, keys in rows])
            reindexing.save(store, emb.model_id, [r[0] for r in rows], vectors)
            done += len(rows)
            if progress:
                progress(done, total)
        reindexing.finish(store, emb.model_id, emb.dim)

    return ReindexResult(memories=total, old_model=old, new_model=emb.model_id, config_file=recorded, env_override=env_override)
