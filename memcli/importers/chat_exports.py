"""ChatGPT and Claude data exports (``conversations.json``) → conversations of user/assistant turns.

ChatGPT: a list of conversations, each a ``mapping`` of message nodes (``parent``, ``children``)
forming a tree: editing a question or regenerating an answer adds a branch, and ``current_node``
marks the leaf of the branch the user kept. Only that branch is read (root → current_node), so a
discarded regeneration never becomes a memory. Messages carry ``author.role``, ``content``
(``content_type`` and ``parts``), ``create_time`` (epoch seconds) and ``recipient`` ("all" unless the
model is calling a tool).

Claude: a list of conversations with ``uuid``, ``name``, ``created_at`` and ``chat_messages``, each
message with ``sender`` (human/assistant), ``text`` and/or ``content`` blocks (text, thinking,
tool_use, tool_result) and ``created_at`` (ISO 8601). Newer exports give each message a
``parent_message_uuid`` and the conversation a ``current_leaf_message_uuid``: the kept branch is
followed there too; older ones are one linear list.

Which export a file is, is told by its content, not its name. What is not a user or assistant
message with text (system prompts, custom instructions, tool calls and results, the model's
hidden reasoning, images) is left out. Odd but valid shapes (a null message, a part that is an
image) are skipped; a file that is not JSON, or whose structure is not an export's, raises
ExportError saying where.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Told apart by keys only these exports use, looked for near the start of the file (a broken export
# must still be recognised, to be reported as one rather than passed over as some other JSON).
_CHATGPT = (re.compile(r'"mapping"\s*:'), re.compile(r'"(current_node|create_time)"\s*:'))
_CLAUDE = re.compile(r'"chat_messages"\s*:')
_SNIFF_CHARS = 200_000
_TEXT_TYPES = {"text", "multimodal_text"}  # ChatGPT content types that are what was said
_HIDDEN = ("is_visually_hidden_from_conversation", "is_user_system_message")


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant" (as memcli's own chat stores them)
    text: str
    time: datetime | None


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    time: datetime | None
    turns: tuple[Turn, ...]


class ExportError(ValueError):
    """A chat export that cannot be read; the message says where."""


def sniff(text: str) -> str | None:
    """"chatgpt", "claude" or None: which export ``text`` looks like, from its first part only."""
    head = text[:_SNIFF_CHARS].lstrip()
    if not head.startswith(("[", "{")):
        return None
    if all(p.search(head) for p in _CHATGPT):
        return "chatgpt"
    if _CLAUDE.search(head):
        return "claude"
    return None


def parse_export(text: str, kind: str | None = None) -> tuple[str, list[Conversation]]:
    """(kind, conversations with at least one turn) of a ChatGPT or Claude export."""
    kind = kind or sniff(text)
    if kind not in ("chatgpt", "claude"):
        raise ExportError("not a ChatGPT or Claude export (a conversations.json)")
    name = "ChatGPT" if kind == "chatgpt" else "Claude"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExportError(f"{name} export: not valid JSON at line {e.lineno}, column {e.colno} ({e.msg}); truncated?") from None
    items = [data] if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ExportError(f"{name} export: expected a list of conversations")
    read = _chatgpt if kind == "chatgpt" else _claude
    out: list[Conversation] = []
    ids: set[str] = set()
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ExportError(f"{name} export: conversation {n} is not a JSON object")
        try:
            conv = read(item, n)
        except ExportError as e:
            raise ExportError(f"{name} export: conversation {n}{_title_of(item)}: {e}") from None
        if conv.id in ids:  # a conversation exported twice would otherwise merge into one session
            conv = Conversation(f"{conv.id}-{n}", conv.title, conv.time, conv.turns)
        ids.add(conv.id)
        if conv.turns:
            out.append(conv)
    return kind, out


def _title_of(item: dict[str, Any]) -> str:
    title = item.get("title") or item.get("name")
    return f" ({str(title)[:60]!r})" if title else ""


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return _iso(value)


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)  # exports write UTC


def _id(item: dict[str, Any], keys: tuple[str, ...], n: int) -> str:
    for k in keys:
        v = item.get(k)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():
            return str(v).strip()
    return f"conversation-{n}"


# -- ChatGPT --------------------------------------------------------------------------------------
def _chatgpt(item: dict[str, Any], n: int) -> Conversation:
    mapping = item.get("mapping")
    if not isinstance(mapping, dict):
        raise ExportError("'mapping' is not an object")
    branch = _kept_branch(mapping, item.get("current_node"))
    turns: list[Turn] = []
    for node in branch:
        turn = _chatgpt_turn(node.get("message"))
        if turn is not None:
            turns.append(turn)
    title = str(item.get("title") or "").strip()
    return Conversation(_id(item, ("conversation_id", "id"), n), title, _epoch(item.get("create_time")), tuple(turns))


def _kept_branch(mapping: dict[str, Any], current: Any) -> list[dict[str, Any]]:
    """Nodes from the root to ``current_node``; without one, the newest leaf (the last child at each step)."""
    if not isinstance(current, str) or current not in mapping:
        roots = [k for k, v in mapping.items() if isinstance(v, dict) and v.get("parent") not in mapping]
        if not roots:
            return []
        current = roots[0]
        seen_down: set[str] = set()
        while True:  # without a current node, follow the last child: the newest regeneration
            node = mapping.get(current)
            kids = node.get("children") if isinstance(node, dict) else None
            nxt = next((k for k in reversed(kids) if isinstance(k, str) and k in mapping), None) if isinstance(kids, list) else None
            if nxt is None or nxt in seen_down:
                break
            seen_down.add(current)
            current = nxt
    return _root_path(current, mapping, "parent")


def _chatgpt_turn(msg: Any) -> Turn | None:
    if not isinstance(msg, dict):
        return None
    author = msg.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    if role not in ("user", "assistant"):
        return None  # system prompts and tool output
    if msg.get("recipient", "all") != "all":
        return None  # the model calling a tool (browsing, code), not talking to the user
    meta = msg.get("metadata")
    if isinstance(meta, dict) and any(meta.get(k) for k in _HIDDEN):
        return None  # custom instructions and other context the user never saw as a message
    content = msg.get("content")
    if not isinstance(content, dict) or content.get("content_type", "text") not in _TEXT_TYPES:
        return None
    parts = content.get("parts")
    if not isinstance(parts, list):
        return None
    text = "\n\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    if not text:
        return None
    return Turn(role, text, _epoch(msg.get("create_time")))


# -- Claude ---------------------------------------------------------------------------------------
def _claude(item: dict[str, Any], n: int) -> Conversation:
    messages = item.get("chat_messages")
    if not isinstance(messages, list):
        raise ExportError("'chat_messages' is not a list")
    msgs = [m for m in messages if isinstance(m, dict)]
    turns = [t for t in (_claude_turn(m) for m in _claude_branch(msgs, item.get("current_leaf_message_uuid"))) if t]
    title = str(item.get("name") or item.get("title") or "").strip()
    return Conversation(_id(item, ("uuid", "id"), n), title, _iso(item.get("created_at")), tuple(turns))


def _claude_branch(msgs: list[dict[str, Any]], leaf: Any) -> list[dict[str, Any]]:
    by_id = {m["uuid"]: m for m in msgs if isinstance(m.get("uuid"), str)}
    if not isinstance(leaf, str) or leaf not in by_id or not any("parent_message_uuid" in m for m in msgs):
        return msgs  # an older, linear export
    return _root_path(leaf, by_id, "parent_message_uuid")


def _root_path(leaf: Any, nodes: dict[str, Any], parent_key: str) -> list[dict[str, Any]]:
    """The branch from the root down to ``leaf``, following each node's ``parent_key`` up (both export
    formats keep the branch the user kept as parent pointers); a cycle is an error, not a hang."""
    path: list[dict[str, Any]] = []
    seen: set[str] = set()
    key = leaf
    while isinstance(key, str) and key in nodes:
        if key in seen:
            raise ExportError("the message tree has a cycle")
        seen.add(key)
        node = nodes[key]
        if not isinstance(node, dict):
            raise ExportError(f"message node {key!r} is not an object")
        path.append(node)
        key = node.get(parent_key)
    path.reverse()
    return path


def _claude_turn(msg: dict[str, Any]) -> Turn | None:
    role = {"human": "user", "user": "user", "assistant": "assistant"}.get(str(msg.get("sender")))
    if role is None:
        return None
    blocks = msg.get("content")
    text = ""
    if isinstance(blocks, list):  # only text blocks: thinking and tool use are not what was said
        text = "\n\n".join(
            b["text"].strip() for b in blocks if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ).strip()
    if not text and isinstance(msg.get("text"), str):
        text = msg["text"].strip()
    if not text:
        return None
    return Turn(role, text, _iso(msg.get("created_at")))
