"""memcli ingest and memcli reindex."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from memcli.cli.common import JsonOpt, SpaceOpt, api

if TYPE_CHECKING:
    from memcli.api import IngestProgress, IngestReport, Memcli


def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or directories (.md, .txt, .jsonl, .org, .html, ChatGPT/Claude conversations.json); '-' reads stdin."
        ),
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="auto (by extension and content), markdown, text, jsonl, org, html or chat-export.")
    ] = "auto",
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Only files matching this glob (repeatable).")] = None,  # noqa: UP045
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Skip files matching this glob (repeatable).")] = None,  # noqa: UP045
    name: Annotated[str | None, typer.Option("--name", help="Stable source name for stdin (re-ingesting replaces it).")] = None,
    prune_missing: Annotated[
        bool, typer.Option("--prune-missing", help="Forget files ingested before that no longer exist.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Turn notes, journals, vaults and chat exports into memories. Re-running only applies what changed."""
    from memcli import ui
    from memcli.errors import ExitCode

    stdin = sys.stdin.buffer.read() if any(str(p) == "-" for p in paths) else None
    files = [p for p in paths if str(p) != "-"]
    mem = api(space)
    kwargs = dict(
        space=space,
        fmt=fmt,
        include=include or [],
        exclude=exclude or [],
        stdin=stdin,
        stdin_name=name,
        prune_missing=prune_missing,
        dry_run=dry_run,
    )
    quiet = json_ or not ui.is_terminal()
    report = mem.ingest(files, **kwargs) if quiet else _with_progress_bar(mem, files, kwargs)  # type: ignore[arg-type]
    if json_:
        ui.emit_json("ingest", report.to_json())
    else:
        _summary(report)
    if report.interrupted:
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    if report.count("skipped"):  # ignored files are not a fault: they do not make the exit code 7
        raise typer.Exit(int(ExitCode.PARTIAL))


def _summary(report: IngestReport) -> None:
    from memcli import ui

    skipped = [f for f in report.files if f.status == "skipped"]
    ui.table(
        ["", "files", "chunks"],
        [
            ("added", report.count("added"), sum(f.added for f in report.files if f.status == "added")),
            ("updated", report.count("updated"), sum(f.added + f.removed for f in report.files if f.status == "updated")),
            ("unchanged", report.count("unchanged"), sum(f.kept for f in report.files if f.status == "unchanged")),
            ("removed", report.count("removed"), sum(f.removed for f in report.files if f.status == "removed")),
            ("skipped", len(skipped), ""),
        ],
        title="dry run: nothing written" if report.dry_run else None,
    )
    if report.links_added:
        ui.line(f"linked: {report.links_added} wikilinks between notes")
    if report.ignored:
        types = ", ".join(f"{t} ×{n}" for t, n in report.ignored)
        ui.line(f"ignored: {report.ignored_files} files of types memcli does not read: {types}")
    for f in skipped:
        ui.notice(f"skipped {f.path}: {f.reason}")
    if report.interrupted:
        ui.notice("interrupted: the files listed were applied completely; run the same command again to finish")


def _with_progress_bar(mem: Memcli, files: list[Path], kwargs: dict[str, object]) -> IngestReport:
    """Reading files (a count), then embedding: memories and conversation messages done of the total, and an ETA."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[what]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=None, what="")

        def progress(at: IngestProgress) -> None:
            if at.reading:
                done = f"{at.files_done:,}/{at.files_total:,} files"
                bar.update(task, description="reading", completed=at.files_done, total=at.files_total, what=done)
                return
            if at.messages_total == at.chunks_total > 0:  # a chat export: every memory is a message
                what = f"{at.messages_done:,}/{at.messages_total:,} messages"
            else:
                what = f"{at.chunks_done:,}/{at.chunks_total:,} memories"
                if at.messages_total:
                    what += f" (messages {at.messages_done:,}/{at.messages_total:,})"
            what += f" · file {min(at.files_done + 1, at.files_total)}/{at.files_total}"
            if bar.tasks[0].description != "embedding":
                bar.reset(task, description="embedding", total=at.chunks_total or None)  # the ETA starts here
            bar.update(task, completed=at.chunks_done, what=what)

        return mem.ingest(files, progress=progress, **kwargs)  # type: ignore[arg-type]


def reindex(
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--model",
            metavar="GGUF",
            help="Move the store to this embedding model (a path, or a name in the models directory) and record it in your config.",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Re-embed every memory with the configured embedding model (after changing models), or move the
    store to another one with --model. Nothing is lost; an interrupted run resumes."""
    from memcli import ui

    mem = api()
    if json_ or not ui.is_terminal():
        result = mem.reindex(model=model)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("re-embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        ) as bar:
            task = bar.add_task("reindex", total=None)
            result = mem.reindex(lambda done, total: bar.update(task, completed=done, total=total), model=model)
    if json_:
        return ui.emit_json("reindex", result.to_json())
    ui.line(f"re-embedded {result.memories} memories with {result.new_model}")
    if result.config_file:
        ui.line(f"[embedding] model is now set in {result.config_file}")
    if result.env_override:
        ui.notice(f"{result.env_override} is set and names another model: it overrides the config file; update or unset it")
