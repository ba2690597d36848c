"""memcli chat: a REPL on a terminal; one answer for -m or stdin."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from memcli.cli.common import JsonOpt, SpaceOpt, api, read_stdin_or

ModelOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--model", help="GGUF chat model (a path or a name in the models directory); default from [chat] model."),
]


def chat(
    message: Annotated[str | None, typer.Option("--message", "-m", help="Answer this once and exit ('-' reads stdin).")] = None,
    model: ModelOpt = None,
    no_remember: Annotated[bool, typer.Option("--no-remember", help="Incognito: nothing from this session is stored.")] = False,
    system: Annotated[str | None, typer.Option("--system", help="System prompt for this session (default from config).")] = None,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Talk with a local model that remembers you. On a terminal: a conversation (/help inside).
    With -m or piped input: one answer, for scripts."""
    from memcli import ui

    mem = api(space)
    if message is None and sys.stdin.isatty() and not json_:
        from memcli.cli.chat_repl import run_repl

        run_repl(mem, model=model, remember=not no_remember, system=system, space=space)
        return
    text = read_stdin_or(message)
    session = mem.chat(model, remember=not no_remember, system=system, space=space)
    if not json_ and ui.is_terminal() and (about := session.about_model):
        ui.notice(about)
    try:
        if json_:
            result = session.ask(text)
        else:
            from memcli.cli.chat_repl import show_turn

            result = show_turn(session, text)
    finally:
        report = session.close()
    if json_:
        ui.emit_json("chat", {**result.to_json(), "learned": report.to_json()})
    for err in report.errors:
        ui.notice(err)
