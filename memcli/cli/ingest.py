"""memcli ingest and memcli reindex."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from memcli.cli.common import JsonOpt, SpaceOpt, api


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories of notes (.md, .txt).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Turn notes into memories. Re-running only applies what changed."""
    from memcli import ui
    from memcli.errors import ExitCode

    mem = api(space)
    if json_ or not ui.is_terminal():
        report = mem.ingest(paths, space=space, dry_run=dry_run)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TextColumn("files"), TimeRemainingColumn(), transient=True
        ) as bar:
            task = bar.add_task("ingest", total=None)

            def progress(done: int, total: int, _path: str) -> None:
                bar.update(task, completed=done, total=total)

            report = mem.ingest(paths, space=space, dry_run=dry_run, progress=progress)
    if json_:
        ui.emit_json("ingest", report.to_json())
    else:
        skipped = [f for f in report.files if f.status == "skipped"]
        ui.table(
            ["", "files", "chunks"],
            [
                ("added", report.count("added"), sum(f.added for f in report.files if f.status == "added")),
                ("updated", report.count("updated"), sum(f.added + f.removed for f in report.files if f.status == "updated")),
                ("unchanged", report.count("unchanged"), sum(f.kept for f in report.files if f.status == "unchanged")),
                ("skipped", len(skipped), ""),
            ],
            title="dry run: nothing written" if dry_run else None,
        )
        for f in skipped:
            ui.notice(f"skipped {f.path}: {f.reason}")
        if report.interrupted:
            ui.notice("interrupted: the files listed were applied completely; run the same command again to finish")
    if report.interrupted:
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    if report.count("skipped"):
        raise typer.Exit(int(ExitCode.PARTIAL))


def reindex(json_: JsonOpt = False) -> None:
    """Re-embed every memory with the configured embedding model (after changing models)."""
    from memcli import ui

    mem = api()
    if json_ or not ui.is_terminal():
        result = mem.reindex()
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("re-embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        ) as bar:
            task = bar.add_task("reindex", total=None)
            result = mem.reindex(lambda done, total: bar.update(task, completed=done, total=total))
    if json_:
        return ui.emit_json("reindex", result.to_json())
    ui.line(f"re-embedded {result.memories} memories with {result.new_model}")
