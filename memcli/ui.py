"""All terminal output: Rich tables on a terminal, plain lines when piped, one JSON envelope.

JSON envelope (stable, documented in the README), on stdout:

    {"schema": "memcli/1", "command": "recall", "ok": true, "data": {...}}
    {"schema": "memcli/1", "command": "recall", "ok": false,
     "error": {"code": 3, "name": "NOT_FOUND", "message": "...", "hint": "..."}}

Memory text is the user's data and may hold anything, including escape sequences that would rewrite
the terminal: every piece of it goes through ``clean`` and is rendered as literal text, never markup.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from memcli.errors import ExitCode, MemcliFailure

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.markdown import Markdown

    from memcli.records import PurgeProof

SCHEMA = "memcli/1"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# json.dumps escapes C0 controls but, with ensure_ascii=False, writes DEL and the C1 controls (U+0080-
# U+009F: CSI, OSC... to a terminal that reads them) as they are; inside a JSON string \u escapes are equal.
_JSON_C1 = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}
_color = "auto"


def set_color(mode: str) -> None:
    global _color
    _color = mode


def clean(s: str) -> str:
    """Make user text safe for a terminal: control characters (ESC included) become visible."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    kw: dict[str, Any] = {"stderr": stderr, "highlight": False, "soft_wrap": True}
    if _color == "always" and "NO_COLOR" not in os.environ:
        kw["force_terminal"] = True
    elif _color == "never":
        kw["no_color"] = True
    return Console(**kw)


def is_terminal() -> bool:
    return _console().is_terminal


def emit_json(command: str, data: Any) -> None:
    envelope = {"schema": SCHEMA, "command": command, "ok": True, "data": data}
    sys.stdout.write(json.dumps(envelope, ensure_ascii=False, indent=None).translate(_JSON_C1) + "\n")


def error(e: MemcliFailure, *, as_json: bool, command: str) -> None:
    if as_json:
        body = {"code": int(e.code), "name": ExitCode(e.code).name, "message": e.message, "hint": e.hint}
        sys.stdout.write(json.dumps({"schema": SCHEMA, "command": command, "ok": False, "error": body}) + "\n")
        return
    con = _console(stderr=True)
    from rich.text import Text

    con.print(Text("memcli: ", style="bold red") + Text(clean(e.message)))
    if e.hint:
        con.print(Text("  hint: ", style="yellow") + Text(clean(e.hint)))


def notice(message: str) -> None:
    from rich.text import Text

    _console(stderr=True).print(Text("memcli: ", style="cyan") + Text(clean(message)))


def line(message: str = "") -> None:
    from rich.text import Text

    _console().print(Text(clean(message)))


def short(text: str, width: int = 100) -> str:
    """One line of at most ``width`` characters."""
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    """A Rich table on a terminal; tab-separated lines (with a header) when piped."""
    rows = [[clean("" if v is None else str(v)) for v in r] for r in rows]
    con = _console()
    if not con.is_terminal:
        sys.stdout.write("\t".join(columns) + "\n")
        for r in rows:
            sys.stdout.write("\t".join(v.replace("\t", " ").replace("\n", " ") for v in r) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        # Text, not str: a cell like "[chat]" is user data, never Rich markup.
        t.add_row(*(Text(v) for v in r))
    con.print(t)


def kv(pairs: Sequence[tuple[str, Any]]) -> None:
    """Key/value listing (``memcli show``, ``stats``)."""
    con = _console()
    width = max((len(k) for k, _ in pairs), default=0)
    from rich.text import Text

    for k, v in pairs:
        value = clean("" if v is None else str(v))
        if con.is_terminal:
            con.print(Text(f"{k:<{width}}  ", style="bold") + Text(value))
        else:
            sys.stdout.write(f"{k}\t{value}\n")


class ReplyView:
    """Shows a reply as it streams: ``with ReplyView() as view:`` then ``view.add(piece)`` for each
    piece. Markdown re-rendered live on a terminal, plain text when piped."""

    def __init__(self) -> None:
        self.text = ""
        self._con = _console()
        self._live: Live | None = None

    def __enter__(self) -> ReplyView:
        if self._con.is_terminal:
            from rich.live import Live

            # Not soft wrap, as elsewhere: under soft wrap Rich leaves long lines to the terminal, but Live
            # redraws its region by rendering each line at the console's width and cropping it there, so a
            # long paragraph lost everything past the right edge. Here Rich must word-wrap the Markdown.
            self._con.soft_wrap = False
            self._live = Live(self._markdown(""), console=self._con, refresh_per_second=10, vertical_overflow="visible")
            self._live.start(refresh=True)
        return self

    def add(self, piece: str) -> None:
        self.text += piece
        if self._live is None:
            sys.stdout.write(clean(piece))
            sys.stdout.flush()
        else:
            self._live.update(self._markdown(clean(self.text)))

    @staticmethod
    def _markdown(text: str) -> Markdown:
        from rich.markdown import Markdown

        # Links show where they go ("text (url)"): a reply steered by a planted note must not hide a
        # link behind harmless words, as a terminal hyperlink would.
        return Markdown(text, hyperlinks=False)

    def __exit__(self, *exc: object) -> None:
        if self._live is None:
            sys.stdout.write("\n")
        else:
            self._live.stop()

    def stopped(self) -> None:
        """Say that the reply was cut short (on a terminal: piped output stays the reply alone)."""
        if self._live is not None:
            notice("reply stopped")


def purge_proof(proof: PurgeProof) -> None:
    """Where a purge scrubbed, and what the scan of memcli's files found."""
    for what in proof.scrubbed:
        line(f"scrubbed {what}")
    searched = f"searched {proof.scanned_files} files of memcli's ({proof.scanned_bytes / 1e6:.1f} MB, models aside)"
    if proof.clean:
        line(f"{searched} for the purged text of {proof.checked} memories: found nowhere")
    else:
        notice(f"{searched}: the purged text is STILL in " + ", ".join(proof.found_in))
    for why in proof.unchecked:
        notice(f"not searched for {why}")
