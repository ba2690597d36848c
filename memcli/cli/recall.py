"""memcli recall."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from memcli.cli.common import JsonOpt, KindOpt, SinceOpt, SpaceOpt, TagOpt, UntilOpt, api, fmt_time, kinds, short_id, when


def recall(
    query: Annotated[str, typer.Argument(help="What to look for, in your own words.")],
    k: Annotated[Optional[int], typer.Option("-k", min=1, max=1000, help="How many memories (default from config).")] = None,  # noqa: UP045
    kind: KindOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    now: Annotated[Optional[str], typer.Option("--now", help="Reference time for recency (default: now).")] = None,  # noqa: UP045
    explain: Annotated[bool, typer.Option("--explain", help="Show each result's dense, keyword and recency evidence.")] = False,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Find memories by meaning and keyword."""
    from memcli import ui

    result = api(space).recall(
        query, k=k, kinds=kinds(kind), tags=tag or [], since=when(since), until=when(until), now=when(now), space=space
    )
    if json_:
        return ui.emit_json("recall", result.to_json())
    if not result.hits:
        ui.notice("nothing found")
        return
    if explain:
        ui.table(
            ["#", "id", "fused", "dense (rank, cos)", "keyword (rank, bm25)", "recency", "text"],
            [
                (
                    h.rank,
                    short_id(h.memory.id),
                    f"{h.score:.4f}",
                    f"{h.dense_rank}, {h.dense_similarity:.3f}" if h.dense_rank else "-",
                    f"{h.keyword_rank}, {h.keyword_score:.2f}" if h.keyword_rank else "-",
                    f"{h.recency:.2f}",
                    ui.short(h.memory.text, 70),
                )
                for h in result.hits
            ],
        )
        return
    ui.table(
        ["#", "id", "when", "text"],
        [
            (h.rank, short_id(h.memory.id), fmt_time(h.memory.event_at or h.memory.recorded_at), ui.short(h.memory.text, 100))
            for h in result.hits
        ],
    )
