"""add, show, list, forget, restore, stats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from memcli.cli.common import (
    JsonOpt,
    KindOpt,
    SinceOpt,
    SpaceOpt,
    TagOpt,
    UntilOpt,
    api,
    fmt_time,
    kinds,
    read_stdin_or,
    short_id,
    when,
)

if TYPE_CHECKING:
    from memcli.records import PurgeProof


def add(
    text: Annotated[Optional[str], typer.Argument(help="What to remember ('-' or omit to read stdin).")] = None,  # noqa: UP045
    tag: TagOpt = None,
    pin: Annotated[bool, typer.Option("--pin", help="Never prune this memory.")] = False,
    when_: Annotated[Optional[str], typer.Option("--when", help="When it happened (2024-03-01, yesterday, ...).")] = None,  # noqa: UP045
    kind: Annotated[str, typer.Option("--kind", help="note, episode, fact, summary, profile.")] = "note",
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Remember a piece of text."""
    from memcli import ui
    from memcli.api import parse_kind

    result = api(space).add(
        read_stdin_or(text), kind=parse_kind(kind), tags=tag or [], pinned=pin, when=when(when_), space=space, source="cli"
    )
    if json_:
        return ui.emit_json("add", result.to_json())
    for m in result.added:
        ui.line(f"remembered {short_id(m.id)}" + (f" (chunk {m.position + 1})" if m.position is not None else ""))
    for m in result.duplicates:
        ui.line(f"already remembered as {short_id(m.id)}")
    if result.chunked:
        ui.notice(
            f"the text was longer than the embedding model takes: split into {len(result.added) + len(result.duplicates)} chunks"
        )


def show(ref: Annotated[str, typer.Argument(help="Memory id (or a unique prefix).")], json_: JsonOpt = False) -> None:
    """Show one memory with all its fields."""
    from memcli import ui

    m = api().show(ref)
    if json_:
        return ui.emit_json("show", m.to_json())
    ui.kv(
        [
            ("id", m.id),
            ("space", m.space),
            ("kind", m.kind.value),
            ("state", m.state),
            ("source", m.source + (f" #{m.position + 1}" if m.position is not None else "")),
            ("recorded", fmt_time(m.recorded_at)),
            ("happened", fmt_time(m.event_at)),
            ("tags", ", ".join(m.tags)),
            ("pinned", "yes" if m.pinned else "no"),
            ("importance", m.importance),
            ("recalled", f"{m.access_count} times" + (f", last {fmt_time(m.last_access)}" if m.last_access else "")),
            ("model", m.embed_model),
            ("hash", m.content_hash[:16]),
        ]
    )
    ui.line()
    ui.line(m.text)


def list_(
    kind: KindOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    trash: Annotated[bool, typer.Option("--trash", help="List the trash instead.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10000, help="Memories per page.")] = 20,
    page: Annotated[int, typer.Option("--page", min=1, help="Page number (newest first).")] = 1,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List memories, newest first."""
    from memcli import ui

    result = api(space).list(
        kinds=kinds(kind),
        tags=tag or [],
        since=when(since),
        until=when(until),
        trash=trash,
        limit=limit,
        offset=(page - 1) * limit,
        space=space,
    )
    if json_:
        return ui.emit_json("list", result.to_json())
    ui.table(
        ["id", "when", "kind", "tags", "text"],
        [
            (short_id(m.id), fmt_time(m.event_at or m.recorded_at), m.kind.value, ",".join(m.tags), ui.short(m.text, 80))
            for m in result.memories
        ],
    )
    shown_to = result.offset + len(result.memories)
    if ui.is_terminal():
        ui.notice(
            f"{result.offset + 1 if result.memories else 0}-{shown_to} of {result.total}"
            + (f"; next: --page {page + 1}" if shown_to < result.total else "")
        )


def forget(
    refs: Annotated[Optional[list[str]], typer.Argument(help="Memory ids (or unique prefixes).")] = None,  # noqa: UP045
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Forget the best matches of a query (previewed first).")
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many matches --query takes.")] = 1,
    purge: Annotated[bool, typer.Option("--purge", help="Erase every trace instead of moving to the trash.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be forgotten.")] = False,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Move memories to the trash (`memcli restore` brings them back), or --purge them for good."""
    import sys

    from memcli import ui
    from memcli.errors import usage_error

    mem = api(space)
    needs_confirm = (query is not None or purge) and not yes and not dry_run
    if needs_confirm:
        preview = mem.forget(refs or [], query=query, k=k, purge=purge, dry_run=True, space=space)
        if not sys.stdin.isatty() or json_:
            raise usage_error(
                f"refusing to {'purge' if purge else 'forget'} {len(preview.memories)} memories without confirmation",
                hint="Check them with --dry-run, then add --yes.",
            )
        ui.table(["id", "text"], [(short_id(m.id), ui.short(m.text, 90)) for m in preview.memories])
        verb = "Erase every trace of" if purge else "Move to the trash"
        if not typer.confirm(f"{verb} these {len(preview.memories)} memories?", default=False):
            raise typer.Exit(1)
        refs = [m.id for m in preview.memories]
        query = None
    result = mem.forget(refs or [], query=query, k=k, purge=purge, dry_run=dry_run, space=space)
    if json_:
        ui.emit_json("forget", result.to_json())
        return _check_proof(result.proof)
    if dry_run:
        ui.table(["id", "text"], [(short_id(m.id), ui.short(m.text, 90)) for m in result.memories])
        ui.notice(f"dry run: {len(result.memories)} memories would be {'purged' if purge else 'moved to the trash'}")
        return
    if purge:
        ui.line(f"purged {len(result.memories)} memories: removed " + ", ".join(result.removed))
        if result.proof is not None:
            ui.purge_proof(result.proof)
        _check_proof(result.proof)
    else:
        ui.line(
            f"moved {len(result.memories)} memories to the trash (undo: memcli restore "
            + " ".join(short_id(m.id) for m in result.memories)
            + ")"
        )


def restore(
    refs: Annotated[list[str], typer.Argument(help="Ids of memories in the trash.")],
    json_: JsonOpt = False,
) -> None:
    """Bring memories back from the trash."""
    from memcli import ui

    restored = api().restore(refs)
    if json_:
        return ui.emit_json("restore", {"ids": [m.id for m in restored]})
    ui.line(f"restored {len(restored)} memories")


def stats(space: SpaceOpt = None, json_: JsonOpt = False) -> None:
    """Counts, sizes and the embedding model of the store."""
    from memcli import ui

    s = api(space).stats(space=space)
    if json_:
        return ui.emit_json("stats", s.to_json())
    ui.kv(
        [
            ("space", s.space),
            ("memories", sum(s.kinds.values())),
            *[(f"  {k}", v) for k, v in sorted(s.kinds.items())],
            ("pinned", s.pinned),
            ("in trash", s.trashed),
            ("other spaces", ", ".join(f"{k} ({v})" for k, v in s.spaces.items() if k != s.space) or "none"),
            ("embedding model", f"{s.embed_model} ({s.dim} dims)" if s.embed_model else "none yet"),
            ("store", s.store if s.store == "embedded" else f"Chroma server {s.store}"),
            ("catalog size" if s.store == "embedded" else "local cache size", f"{s.db_bytes / 1e6:.1f} MB"),
            ("vector index size", f"{s.vector_bytes / 1e6:.1f} MB" if s.store == "embedded" else "on the server"),
            ("time span", f"{fmt_time(s.oldest)} … {fmt_time(s.newest)}" if s.oldest else ""),
        ]
    )


def doctor(
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild what can be rebuilt from the catalog.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Check that the catalog, keyword index and vector index agree (and fix them with --repair)."""
    from memcli import ui
    from memcli.errors import ExitCode
    from memcli.records import from_epoch

    report = api().doctor(repair=repair)
    if json_:
        ui.emit_json("doctor", report.to_json())
    else:
        ui.table(
            ["check", "", "detail"],
            [(f.check, "ok" if f.ok else ("repaired" if f.repaired else "PROBLEM"), f.detail) for f in report.findings],
        )
        if report.quarantined:
            ui.table(
                ["when", "operation", "source", "why refused", "model's answer"],
                [
                    (fmt_time(from_epoch(q.at)), q.operation, q.source, ui.short(q.error, 60), ui.short(q.raw, 60))
                    for q in report.quarantined
                ],
                title="quarantined LLM outputs (newest first)",
            )
        if not report.ok:
            ui.notice("problems found: `memcli doctor --repair` rebuilds the indexes from the catalog")
    if not report.ok:
        raise typer.Exit(int(ExitCode.STORE))


def _check_proof(proof: PurgeProof | None) -> None:
    """A purge whose scan still found the text has not kept its promise: exit non-zero (STORE)."""
    from memcli.errors import ExitCode

    if proof is not None and not proof.clean:
        raise typer.Exit(int(ExitCode.STORE))
