"""memcli recall."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from memcli.cli.common import JsonOpt, KindOpt, SinceOpt, SpaceOpt, TagOpt, UntilOpt, api, fmt_time, kinds, short_id, when


def recall(
    query: Annotated[str, typer.Argument(help="What to look for, in your own words ('last week', 'in March 2023' work too).")],
    k: Annotated[Optional[int], typer.Option("-k", min=1, max=1000, help="How many memories (default from config).")] = None,  # noqa: UP045
    kind: KindOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    now: Annotated[Optional[str], typer.Option("--now", help="Reference time for 'last week', recency (default: now).")] = None,  # noqa: UP045
    as_of: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--as-of", help="Answer with what was true then (superseded facts included), e.g. 2024-03-01."),
    ] = None,
    context: Annotated[int, typer.Option("--context", "-C", min=0, max=20, help="Also show N neighbours of each hit.")] = 0,
    links: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--links", min=0, max=20, help="Also show up to N memories linked to each hit, one hop (default 0; 2 with --explain)."
        ),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show the evidence: dense, keyword, recency, time window, links.")
    ] = False,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Find memories by meaning, keyword and time."""
    from memcli import ui

    result = api(space).recall(
        query,
        k=k,
        kinds=kinds(kind),
        tags=tag or [],
        since=when(since),
        until=when(until),
        now=when(now),
        space=space,
        context=context,
        as_of=when(as_of),
        links=(2 if explain else 0) if links is None else links,
    )
    if json_:
        return ui.emit_json("recall", result.to_json())
    for d in result.degraded:  # never a silent keyword-only answer
        ui.notice(d.reason + (f" (hint: {d.hint})" if d.hint else ""))
    if explain:
        ui.notice(
            f"time window: {result.time_window or 'none in the query'}; best similarity {result.confidence:.3f}"
            + ("; nothing clearly relevant (abstained)" if result.abstained else "")
        )
    elif result.abstained:
        ui.notice("nothing relevant found" + (" (closest matches hidden; --explain shows them)" if result.hits else ""))
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
                    # Flagged when written: reads as instructions to the assistant (quoted as data in prompts).
                    ("[instruction-like] " if h.memory.instruction_like else "") + ui.short(h.memory.text, 70),
                )
                for h in result.hits
            ],
        )
        linked = [
            (f"{h.rank}", short_id(x.memory.id), "↳ " + x.reason, ui.short(x.memory.text, 70))
            for h in result.hits
            for x in h.linked
        ]
        if linked:
            ui.table(["hit", "id", "linked, one hop: why", "text"], linked)
        return
    rows = []
    for h in result.hits:
        before = [m for m in h.context if (m.position or 0) < (h.memory.position or 0)]
        after = [m for m in h.context if (m.position or 0) > (h.memory.position or 0)]
        rows += [("", "", "", "  " + ui.short(m.text, 98)) for m in before]
        rows.append(
            (
                str(h.rank),
                short_id(h.memory.id),
                fmt_time(h.memory.event_at or h.memory.recorded_at),
                ui.short(h.memory.text, 100),
            )
        )
        rows += [("", "", "", "  " + ui.short(m.text, 98)) for m in after]
        rows += [("", short_id(x.memory.id), "", f"  ↳ {x.kind}: " + ui.short(x.memory.text, 90)) for x in h.linked]
    ui.table(["#", "id", "when", "text"], rows)
