"""The interactive chat: prompt_toolkit for input (history, line editing, multi-line), Rich for replies."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from memcli import ui
from memcli.cli.common import fmt_time, short_id
from memcli.errors import MemcliFailure

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

    from memcli.api import ChatSession, Memcli, TurnResult

HELP = """\
Type a message and press Enter. Alt-Enter (or Esc then Enter) starts a new line.
Ctrl-C stops a reply; Ctrl-D (or /exit) ends the conversation.
  /remember TEXT   remember this about you
  /forget WHAT     forget facts and turns that say WHAT (restorable: memcli list --trash)
  /recall QUERY    search your memories
  /memories        the memories used for the last reply, and what this conversation taught me
  /profile         what I always keep in mind about you
  /new             start a new conversation (this one is kept)
  /help            this text
  /exit            end the conversation"""


def _prompt(history_file: str | None) -> PromptSession[str]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event: object) -> None:
        event.current_buffer.insert_text("\n")  # type: ignore[attr-defined]

    history: History = InMemoryHistory()
    if history_file is not None:
        # What you type is private: the history file is owner-only from the first byte.
        os.close(os.open(history_file, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
        history = FileHistory(history_file)
    return PromptSession(history=history, key_bindings=keys, multiline=False, enable_history_search=True)


def run_repl(mem: Memcli, *, model: str | None, remember: bool, system: str | None, space: str | None) -> None:
    session = mem.chat(model, remember=remember, system=system, space=space)
    history = str(mem.data_dir / "chat_history") if remember else None
    prompt = _prompt(history)
    mode = "" if remember else " — incognito: nothing from this conversation is stored"
    ui.notice(f"chatting with {session.model.model_id} in space {session.space}{mode}. /help for commands, Ctrl-D to end.")
    if about := session.about_model:
        ui.notice(about)
    said: set[str] = set()  # degraded-recall notices already given
    try:
        while True:
            try:
                text = prompt.prompt("you> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line, as in a shell
            except EOFError:
                break
            if not text.strip():
                continue
            if text.lstrip().startswith("/"):
                if not _slash(session, text.strip()):
                    break
                continue
            try:
                show_turn(session, text, said)
            except MemcliFailure as e:
                ui.error(e, as_json=False, command="chat")
            except KeyboardInterrupt:  # Ctrl-C anywhere in a turn stops the turn, never the session
                ui.notice("stopped")
    finally:
        _finish(session)


def show_turn(session: ChatSession, text: str, said: set[str] | None = None) -> TurnResult:
    """One turn, its reply shown as it streams. Ctrl-C stops the reply (the session keeps it as far as
    it got); a Ctrl-C before or after the reply propagates, to stop the turn. A recall leg missing for
    this turn is said once per conversation (``said`` remembers which legs were)."""
    with ui.ReplyView() as view:
        result = session.turn(text, on_token=view.add)
    if result.interrupted:
        view.stopped()
    said = set() if said is None else said
    for d in result.plan.degraded:
        if d.leg not in said:  # once per leg: the counts in the reason change from turn to turn
            said.add(d.leg)
            ui.notice(d.reason + (f" (hint: {d.hint})" if d.hint else ""))
    return result


def _finish(session: ChatSession) -> None:
    if session.pending():
        ui.notice("saving what I learned from this conversation… (Ctrl-C to skip)")
    try:
        report = session.close()
    except KeyboardInterrupt:
        report = session.close(wait=False)
        ui.notice(f"skipped learning from {report.pending} exchange(s); the conversation itself is stored")
    learned = [c for c in report.changes if c.action in ("added", "refined", "superseded")]
    held = [c for c in learned if c.pending_review]
    if len(learned) > len(held):
        ui.notice(f"learned {len(learned) - len(held)} thing(s) about you this time; `memcli list --kind fact` shows them")
    if held:
        ui.notice(f"{len(held)} thing(s) I learned wait for your review ([chat] review): `memcli review`")
    for err in report.errors:
        ui.notice(err)


def _slash(session: ChatSession, line: str) -> bool:
    """Run a slash command; False ends the conversation."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    commands: dict[str, Callable[[ChatSession, str], None]] = {
        "/remember": _remember,
        "/forget": _forget,
        "/recall": _recall,
        "/memories": _memories,
        "/profile": _profile,
        "/new": _new,
        "/help": lambda s, a: ui.line(HELP),
    }
    if name in ("/exit", "/quit"):
        return False
    command = commands.get(name)
    if command is None:
        ui.notice(f"unknown command {name}; /help lists them")
        return True
    try:
        command(session, arg)
    except MemcliFailure as e:
        ui.error(e, as_json=False, command="chat")
    return True


def _remember(session: ChatSession, arg: str) -> None:
    change = session.remember_text(arg)
    if change.action == "duplicate":
        ui.notice(f"I already knew that ({short_id(change.target_id or '')})")
    else:
        ui.notice(f"remembered ({short_id(change.memory_id or '')})")


def _forget(session: ChatSession, arg: str) -> None:
    changes = session.forget(arg)
    gone = [c for c in changes if c.memory_id]
    if not gone:
        ui.notice("nothing I remember matches that")
        return
    ui.table(["id", "forgotten"], [(short_id(c.memory_id or ""), ui.short(c.text, 100)) for c in gone])
    if any(not c.pending_review for c in gone):
        ui.notice("moved to the trash: `memcli restore ID` brings one back, `memcli forget --purge` erases for good")
    if any(c.pending_review for c in gone):
        ui.notice("facts that were waiting for your review are rejected: they will not be learned again")


def _recall(session: ChatSession, arg: str) -> None:
    result = session.recall(arg)
    if result.abstained:
        ui.notice("nothing relevant found")
        return
    ui.table(
        ["#", "id", "when", "text"],
        [(h.rank, short_id(h.memory.id), fmt_time(h.memory.when), ui.short(h.memory.text)) for h in result.hits],
    )


def _memories(session: ChatSession, arg: str) -> None:
    plan = session.last_plan
    for d in () if plan is None else plan.degraded:
        ui.notice(d.reason + (f" (hint: {d.hint})" if d.hint else ""))
    if plan is None:
        ui.notice("no reply yet")
    elif not plan.hits:
        ui.notice("the last reply used no memories (nothing relevant was found)")
    else:
        rows = [
            (short_id(h.memory.id), h.memory.kind.value, ("[instruction-like] " if h.memory.instruction_like else "") + ui.short(h.memory.text))
            for h in plan.hits
        ]
        ui.table(["id", "kind", "used for the last reply"], rows)
    changes = [c for c in session.report.changes if c.action != "dropped"]
    if changes:
        ui.table(
            ["change", "id", "what"],
            [
                (c.action + (" (pending review)" if c.pending_review else ""), short_id(c.memory_id or c.target_id or ""), ui.short(c.text))
                for c in changes
            ],
        )
    if session.pending():
        ui.notice(f"still learning from {session.pending()} exchange(s)")


def _profile(session: ChatSession, arg: str) -> None:
    text, memories = session.current_profile()
    if not text:
        ui.notice("I know nothing about you yet: tell me, or /remember something")
        return
    ui.line(text)
    ui.notice(f"from {len(memories)} memory(ies); facts learned in this conversation join it next time")


def _new(session: ChatSession, arg: str) -> None:
    _finish(session)
    session.new()
    ui.notice("new conversation")
