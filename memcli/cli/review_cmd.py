"""memcli review [approve | reject | edit]: facts chat learned while [chat] review is on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from memcli.cli.common import JsonOpt, SpaceOpt, api, fmt_time, short_id

if TYPE_CHECKING:
    from memcli.api import ReviewResult

app = typer.Typer(
    rich_markup_mode=None,
    help="Facts chat learned that wait for your review ([chat] review = true). Without a command: list them, "
    "oldest first (not recalled, not shown to the model, replacing nothing until approved).",
    invoke_without_command=True,
)
IdsArg = Annotated[Optional[list[str]], typer.Argument(help="Pending fact ids (or unique prefixes), as `memcli review` lists them.")]  # noqa: UP045
AllOpt = Annotated[bool, typer.Option("--all", help="Every fact waiting for review in the space.")]


@app.callback()
def review(ctx: typer.Context, space: SpaceOpt = None, json_: JsonOpt = False) -> None:
    """List the facts waiting for review, oldest first. Until approved they are not recalled, not shown
    to the chat model and replace nothing."""
    if ctx.invoked_subcommand is not None:
        return
    from memcli import ui

    result = api(space).review(space=space)
    if json_:
        return ui.emit_json("review", result.to_json())
    if not result.facts:
        ui.notice(f"nothing waits for review in space {result.space}")
        return
    ui.table(
        ["id", "learned", "fact", "on approval", "you said"],
        [
            (
                short_id(f.id),
                fmt_time(f.learned_at),
                ui.short(f.text, 70),
                "add" if f.target_id is None else f"{f.action}: {ui.short(f.target_text or '(gone)', 50)}",
                ui.short(f.said or "", 60),
            )
            for f in result.facts
        ],
    )
    if ui.is_terminal():
        ui.notice(
            "memcli review approve ID… (or --all) keeps them; reject ID… drops them for good; "
            'edit ID "TEXT" keeps one in your words'
        )


@app.command()
def approve(ids: IdsArg = None, all_: AllOpt = False, space: SpaceOpt = None, json_: JsonOpt = False) -> None:
    """Keep pending facts: they become memories, and what each corrects or refines is retired now."""
    _show(api(space).approve(ids or [], every=all_, space=space), "review approve", json_)


@app.command()
def reject(ids: IdsArg = None, all_: AllOpt = False, space: SpaceOpt = None, json_: JsonOpt = False) -> None:
    """Drop pending facts: their text is deleted, and the same words will not teach them again."""
    _show(api(space).reject(ids or [], every=all_, space=space), "review reject", json_)


@app.command()
def edit(
    id_: Annotated[str, typer.Argument(metavar="ID", help="A pending fact id (or a unique prefix).")],
    text: Annotated[str, typer.Argument(help="The fact as you want it kept.")],
    json_: JsonOpt = False,
) -> None:
    """Keep a pending fact in your own words (re-embedded, then approved)."""
    _show(api().edit_pending(id_, text), "review edit", json_)


def _show(result: ReviewResult, command: str, json_: bool) -> None:
    from memcli import ui

    if json_:
        return ui.emit_json(command, result.to_json())
    ui.table(
        ["id", "outcome", "fact", "why"],
        [(short_id(d.fact.id), d.outcome, ui.short(d.fact.text, 80), d.reason) for d in result.decisions],
    )
    if ui.is_terminal():
        ui.notice(f"{result.approved} approved, {result.rejected} rejected")
