"""A streamed chat reply wraps at the terminal's width: nothing past the right edge is lost.

The reply is Markdown re-rendered in a Rich ``Live`` region. The consoles memcli makes are in soft-wrap
mode (long lines are left to the terminal), but ``Live`` renders each line at the console's width and
crops it there, so a long paragraph used to be cut at the right edge instead of wrapped."""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from memcli import ui

WIDTH = 60
ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")
LAST_WORD = "Zanzibarquette"
# A long token that cannot fit on one line: it may be folded, but none of it may be lost.
LONG_TOKEN = "/srv/archive/" + "segment-" * 8 + "end.txt"
REPLY = (
    "Here is what I remember about your garden: you planted tomatoes along the south fence in April, "
    "the basil went in beside them a week later, and the old apple tree by the shed needs pruning before "
    "the first frost. You keep the seed catalogue in " + LONG_TOKEN + " and you wanted to try growing "
    "leeks next year because the soil by the compost heap stays damp all summer long, which they love. "
    "The last word of this reply is " + LAST_WORD
)


def _words() -> Iterator[str]:
    words = REPLY.split(" ")
    for i, w in enumerate(words):
        yield w if i == len(words) - 1 else w + " "


def _show(pieces: Iterator[str]) -> str:
    with ui.ReplyView() as view:
        for piece in pieces:
            view.add(piece)
    return view.text


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """``ui._console`` makes its usual console (the same settings), but on a 60-column fake terminal."""
    from rich.console import Console

    buf = io.StringIO()
    real = ui._console

    def fake(stderr: bool = False) -> Console:
        model = real(stderr)
        return Console(file=buf, force_terminal=True, width=WIDTH, soft_wrap=model.soft_wrap, highlight=False)

    monkeypatch.setattr(ui, "_console", fake)
    return buf


def test_streamed_reply_wraps_at_the_terminal_width(terminal: io.StringIO) -> None:
    assert _show(_words()) == REPLY
    raw = terminal.getvalue()
    lines = [ANSI.sub("", chunk) for chunk in re.split(r"[\r\n]", raw)]
    assert all(len(x.rstrip()) <= WIDTH for x in lines), [x for x in lines if len(x.rstrip()) > WIDTH]
    # The last frame Live drew (after its last erase-line) is the whole reply, wrapped.
    final = ANSI.sub("", raw.split("\x1b[2K")[-1])
    final_lines = [x.rstrip() for x in final.splitlines() if x.strip()]
    assert len(final_lines) > 1 and all(len(x) <= WIDTH for x in final_lines), final_lines
    assert LAST_WORD in final
    assert "".join(final.split()) == "".join(REPLY.split())  # nothing lost
    for word in REPLY.split():  # words kept whole (each fits on a line; the long token may be folded)
        if word != LONG_TOKEN:
            assert any(word in x for x in final_lines), word


def test_piped_reply_stays_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert _show(_words()) == REPLY
    assert capsys.readouterr().out == REPLY + "\n"


def test_repl_reply_wraps_in_a_60_column_pty(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`memcli chat` through a real 24x60 pseudo-terminal, the model a scripted server giving the long reply."""
    import scripted_server

    monkeypatch.setattr(scripted_server, "REPLY", REPLY)
    with scripted_server.scripted_server() as url:
        settings = {"BACKEND": "openai", "URL": url, "SERVER_MODEL": "scripted", "EXTRACT": "false"}
        env = {**os.environ, **{f"MEMCLI_CHAT_{k}": v for k, v in settings.items()}}
        env.update({"PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm-256color", "NO_COLOR": "1"})
        for var in ("COLUMNS", "LINES"):
            env.pop(var, None)
        child = pexpect.spawn(
            sys.executable, ["-m", "memcli", "chat"], env=env, encoding="utf-8", timeout=60, dimensions=(24, WIDTH), use_poll=True
        )
        try:
            child.expect("you>")
            child.sendline("what do you remember about my garden?")
            child.expect(r"\x1b\[\?2004l")  # prompt_toolkit accepted the line
            child.expect("you>")  # the reply was shown and the prompt came back
            shown = ANSI.sub("", child.before or "")
            child.sendline("/exit")
            child.expect(pexpect.EOF)
        finally:
            child.close()
    assert child.exitstatus == 0, child.before
    assert LAST_WORD in shown, f"the reply's last word never reached the terminal: {shown!r}"
    assert "".join(REPLY.split()) in "".join(shown.split())  # nothing lost
    assert all(len(x.rstrip()) <= WIDTH for x in re.split(r"[\r\n]", shown)), shown
