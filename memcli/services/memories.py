"""Adding, showing, listing, forgetting and restoring memories."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from memcli.context import Context
from memcli.errors import not_found, usage_error
from memcli.records import AddResult, ForgetResult, Kind, Memory, Page, Stats, from_epoch
from memcli.services.scrub import scrub_and_prove
from memcli.store import Filter, NewMemory, content_hash
from memcli.text.chunking import split_text

MAX_TEXT_CHARS = 1_000_000  # one `add` of more than this is a file: use `memcli ingest`


def parse_kind(kind: str) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        raise usage_error(f"unknown kind {kind!r}", hint=f"Use one of: {', '.join(k.value for k in Kind)}.") from None


def add(
    ctx: Context,
    text: str,
    *,
    space: str | None = None,
    kind: Kind = Kind.NOTE,
    tags: Sequence[str] = (),
    pinned: bool = False,
    when: datetime | None = None,
    source: str = "cli",
    importance: float = 0.5,
) -> AddResult:
    """Remember ``text``. Text longer than the embedding model takes is split into chunks (each its
    own memory, in order); text already remembered in this space is not stored twice."""
    text = text.strip()
    if not text:
        raise usage_error("nothing to remember: the text is empty", hint="Pass the text as an argument or on stdin.")
    if len(text) > MAX_TEXT_CHARS:
        raise usage_error(
            f"the text is {len(text):,} characters; `add` takes at most {MAX_TEXT_CHARS:,}",
            hint="Save it to a file and use `memcli ingest FILE`, which handles long documents.",
        )
    space = ctx.space(space)
    tags = tuple(dict.fromkeys(t.strip().lstrip("#") for t in tags if t.strip()))
    emb = ctx.embedder
    chunks = split_text(text, emb.max_tokens, emb.count_tokens)
    store = ctx.store
    fresh: list[tuple[int, str]] = []
    duplicates: list[Memory] = []
    for i, chunk in enumerate(chunks):
        existing = store.catalog.by_hash(space, content_hash(chunk))
        if existing is not None:
            duplicates.append(existing)
        else:
            fresh.append((i, chunk))
    vectors = emb.embed_documents([c for _, c in fresh])
    event_at = when.timestamp() if when else None
    items = [
        (
            NewMemory(
                text=c,
                kind=kind,
                source=source,
                position=i if len(chunks) > 1 else None,
                event_at=event_at,
                tags=tags,
                pinned=pinned,
                importance=importance,
            ),
            v,
        )
        for (i, c), v in zip(fresh, vectors)
    ]
    ids = store.add(space, items, emb.model_id)
    added = store.catalog.by_ids(ids)
    return AddResult(tuple(added[i] for i in ids), tuple(duplicates), chunked=len(chunks) > 1)


def show(ctx: Context, ref: str) -> Memory:
    return ctx.store.find(ref)


def list_memories(
    ctx: Context,
    *,
    space: str | None = None,
    kinds: Sequence[Kind] = (),
    tags: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    trash: bool = False,
    limit: int = 20,
    offset: int = 0,
) -> Page:
    f = Filter(
        space=ctx.space(space),
        kinds=tuple(k.value for k in kinds),
        tags=tuple(tags),
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
        state="trashed" if trash else "active",
    )
    memories, total = ctx.store.catalog.page(f, limit, offset)
    return Page(tuple(memories), total, offset)


def _resolve(ctx: Context, refs: Sequence[str]) -> list[Memory]:
    out: dict[str, Memory] = {}
    for ref in refs:
        m = ctx.store.find(ref)
        out[m.id] = m
    return list(out.values())


def forget(
    ctx: Context,
    refs: Sequence[str] = (),
    *,
    query: str | None = None,
    k: int = 5,
    space: str | None = None,
    purge: bool = False,
    dry_run: bool = False,
) -> ForgetResult:
    """Move memories to the trash (restorable), or with ``purge`` erase every trace of them.

    ``query`` selects the top ``k`` recall results instead of ids; callers preview with ``dry_run``.
    A purge also empties matching memories already in the trash."""
    if not refs and not query:
        raise usage_error(
            "say what to forget: memory ids, or --query TEXT", hint="Find ids with `memcli recall` or `memcli list`."
        )
    if refs:
        memories = _resolve(ctx, refs)
    else:
        from memcli.services.recall import recall

        assert query is not None
        memories = [h.memory for h in recall(ctx, query, k=k, space=space, touch=False).hits]
        if not memories:
            raise not_found(f"no memory matches {query!r}", hint="Try other words, or `memcli list`.")
    if not purge:
        already = [m for m in memories if m.state != "active"]
        if already and len(already) == len(memories):
            raise usage_error(
                "already in the trash: " + ", ".join(m.id[:8] for m in already),
                hint="`memcli restore ID` brings them back; `memcli forget --purge ID` erases them.",
            )
        memories = [m for m in memories if m.state == "active"]
    if dry_run:
        return ForgetResult(tuple(memories), purged=purge, dry_run=True)
    if purge:
        removed = ctx.store.purge(memories)
        proof = scrub_and_prove(ctx, memories)
        return ForgetResult(tuple(memories), purged=True, dry_run=False, removed=tuple(removed), proof=proof)
    ctx.store.trash(memories)
    return ForgetResult(tuple(memories), purged=False, dry_run=False)


def restore(ctx: Context, refs: Sequence[str]) -> list[Memory]:
    memories = _resolve(ctx, refs)
    active = [m for m in memories if m.state == "active"]
    if active:
        raise usage_error(
            "not in the trash: " + ", ".join(m.id[:8] for m in active), hint="`memcli list --trash` shows the trash."
        )
    ctx.store.restore(memories)
    fresh = ctx.store.catalog.by_ids([m.id for m in memories])
    return [fresh[m.id] for m in memories]


def stats(ctx: Context, space: str | None = None) -> Stats:
    space = ctx.space(space)
    cat = ctx.store.catalog
    kinds = cat.kind_counts(space)
    trashed, pinned, oldest, newest = cat.space_summary(space)
    dim = cat.meta("embed_dim")
    vec_dir = ctx.paths.chroma_dir
    vector_bytes = sum(p.stat().st_size for p in vec_dir.rglob("*") if p.is_file()) if vec_dir.exists() else 0
    return Stats(
        space=space,
        spaces=cat.spaces(),
        kinds=kinds,
        trashed=trashed,
        pinned=pinned,
        embed_model=cat.meta("embed_model"),
        dim=int(dim) if dim else None,
        db_bytes=cat.db_bytes(),
        vector_bytes=vector_bytes,
        oldest=from_epoch(oldest),
        newest=from_epoch(newest),
        store=ctx.server_config().where() if ctx.server_mode else "embedded",
    )
