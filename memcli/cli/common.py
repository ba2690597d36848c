"""Options shared by the commands, and opening the API once per process."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from memcli.api import Memcli

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON envelope on stdout (see README).")]
SpaceOpt = Annotated[Optional[str], typer.Option("--space", "-s", help="Memory space (default from config).")]  # noqa: UP045
KindOpt = Annotated[Optional[list[str]], typer.Option("--kind", help="note, episode, fact, summary, profile (repeatable).")]  # noqa: UP045
TagOpt = Annotated[Optional[list[str]], typer.Option("--tag", "-t", help="Tag (repeatable).")]  # noqa: UP045
SinceOpt = Annotated[Optional[str], typer.Option("--since", help="From this time: 2024-03-01, yesterday, '3 weeks ago', 'last Christmas'.")]  # noqa: UP045
UntilOpt = Annotated[Optional[str], typer.Option("--until", help="Before this time (same forms as --since).")]  # noqa: UP045

_opened: list[Memcli] = []
store_url: list[str] = []  # --store-url, set by the root callback


def api(space: str | None = None) -> Memcli:
    from memcli import ui
    from memcli.api import Memcli

    if not _opened:
        m = Memcli(space=space, settings={("store", "url"): store_url[0]} if store_url else None)
        m.listen(on_wait=lambda: ui.notice("waiting for another memcli process to finish writing…"), on_notice=ui.notice)
        _opened.append(m)
    return _opened[0]


def close() -> None:
    """Print what the user should hear about, and close the store (one CLI invocation is over)."""
    from memcli import ui

    for m in _opened:
        for n in m.notices:
            ui.notice(n)
        m.close()
    _opened.clear()
    store_url.clear()


def when(value: str | None) -> datetime | None:
    if value is None:
        return None
    from memcli.api import parse_time

    return parse_time(value)


def kinds(values: list[str] | None) -> list:  # type: ignore[type-arg]
    from memcli.api import parse_kind

    return [parse_kind(v) for v in values or []]


def read_stdin_or(text: str | None) -> str:
    """The argument, or stdin when the argument is '-' or missing and stdin is not a terminal."""
    from memcli.errors import usage_error

    if text is not None and text != "-":
        return text
    if text == "-" or not sys.stdin.isatty():
        try:
            return sys.stdin.read()
        except UnicodeDecodeError:
            raise usage_error("stdin is not UTF-8 text", hint="Convert it first, e.g. with iconv.") from None
    raise usage_error("no text given", hint="Pass it as an argument, or pipe it on stdin.")


def short_id(mid: str) -> str:
    return mid[:8]


def fmt_time(dt: datetime | None) -> str:
    return "" if dt is None else dt.astimezone().strftime("%Y-%m-%d %H:%M")
