"""memcli consolidate: the nightly tidy-up (dedupe, reconcile, summarise, profile, link, decay report)."""

from __future__ import annotations

from typing import Annotated

import typer

from memcli.cli.chat import ModelOpt
from memcli.cli.common import JsonOpt, SinceOpt, SpaceOpt, api, when


def consolidate(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")] = False,
    since: SinceOpt = None,
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="Only the steps that need no chat model (dedupe, link, decay).")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another consolidate is running, wait for it instead of exiting (code 9).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Take out (merge away, retire) more than [lifecycle] max_change_fraction of the space."),
    ] = False,
    model: ModelOpt = None,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Make memory smaller, truer and better organised: merge duplicates, retire contradicted facts,
    summarise days and weeks, update your profile, link related memories, report what is fading.
    Safe to run from cron (see README, "Nightly consolidation"); --since limits it to recent changes
    (default: what changed since the last run). A run that would take out more than
    [lifecycle] max_change_fraction of the space takes nothing out and exits with code 10 (--force
    overrides); one whose changes do not show in the store exits with code 11."""
    from memcli import ui
    from memcli.errors import ExitCode

    report = api(space).consolidate(
        space=space, model=model, use_llm=not no_llm, dry_run=dry_run, since=when(since), wait=wait, force=force
    )
    if json_:
        ui.emit_json("consolidate", report.to_json())
    elif ui.is_terminal():
        ui.table(
            ["step", "status", "changes", "LLM calls", "failures", "seconds"],
            [
                (
                    s.step,
                    s.status + (f": {s.reason}" if s.reason else ""),
                    ", ".join(f"{k} {v}" for k, v in s.counts.items()) or "-",
                    s.llm_calls,
                    len(s.failures),
                    f"{s.seconds:.2f}",
                )
                for s in report.steps
            ],
            title=("dry run: nothing was changed" if report.dry_run else f"consolidated space {report.space}")
            + f" (changes since {report.since})",
        )
        for s in report.steps:
            for e in s.examples:
                ui.line(f"{s.step}: {e}")
            for f in s.failures:
                ui.notice(f"{s.step} failed (nothing applied): {f}")
        if report.missing_model:
            ui.notice("reconcile, summarise and profile need a chat model: set [chat] model (README, Chat), or pass --no-llm")
        if report.over_budget is not None and report.dry_run:
            ui.notice(f"a real run would stop here: {report.over_budget.message}")
        if report.log_file:
            ui.notice(f"report appended to {report.log_file}")
    elif report.needs_attention:
        # Piped or under cron: quiet unless someone should look (cron mails what goes to stderr).
        skipped = [s.step for s in report.steps if s.status == "skipped" and s.reason != "--no-llm"]
        parts = [f"{report.failures} failure(s)"] if report.failures else []
        if skipped:
            parts.append(f"skipped {', '.join(skipped)}: {report.step(skipped[0]).reason}")
        if parts:  # the change budget and a write without effect are said below, as errors
            ui.notice("consolidate: " + "; ".join(parts) + (f" (details: {report.log_file})" if report.log_file else ""))
    problem = report.failure()
    if problem is not None:
        if json_:  # the report above carries it (over_budget, no_effect): one JSON document on stdout
            raise typer.Exit(int(problem.code))
        raise problem
    if report.failures:
        raise typer.Exit(int(ExitCode.PARTIAL))
