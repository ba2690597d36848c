"""JSONL imports: one memory per line, or conversations (messages with speakers and times).

Memory form, one object per line::

    {"text": "Bought a lighthouse print for Inès", "time": "2026-10-03T19:00", "kind": "episode",
     "tags": ["gifts"], "source": "export:journal", "space": "personal"}

Conversation form: a line is one message of a session, or a whole session::

    {"session": "s1", "speaker": "Caroline", "text": "I went to a support group", "time": "2023-05-08T13:56"}
    {"session": "s2", "time": "2023-05-25T13:14", "messages": [{"role": "user", "text": "..."}, ...]}

Only ``text`` (or ``content``) is required. ``time`` is ISO 8601 (a zone-less time is local) or
epoch seconds. Messages of a session keep their order; a message without a time takes its session's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

KINDS = ("note", "episode", "fact", "summary", "profile")


@dataclass(frozen=True)
class Record:
    text: str
    line: int
    time: datetime | None = None
    kind: str | None = None
    tags: tuple[str, ...] = ()
    source: str | None = None
    space: str | None = None
    session: str | None = None
    speaker: str | None = None


class JsonlError(ValueError):
    """A line that is not a valid record; the message names the line."""


def _time(value: Any, line: int) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            dt = datetime.fromtimestamp(float(value)).astimezone()
        elif isinstance(value, str):
            try:
                dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise JsonlError(f"line {line}: time {value!r} is not ISO 8601 (e.g. 2023-05-08T13:56)") from None
            dt = dt if dt.tzinfo else dt.astimezone()
        else:
            raise JsonlError(f"line {line}: time must be a string or a number")
        dt.astimezone(UTC)  # the store keeps UTC: the time must exist there too
    except JsonlError:
        raise
    except (OverflowError, OSError, ValueError):  # 1e20, NaN, year 1 east of UTC, year 9999 west of it
        raise JsonlError(f"line {line}: time {value!r} is out of range (years 1 to 9999)") from None
    return dt


def _tags(value: Any, line: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise JsonlError(f"line {line}: tags must be a list of strings")
    return tuple(t.strip().lstrip("#") for t in value if t.strip())


def _opt_str(obj: dict[str, Any], key: str, line: int) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise JsonlError(f"line {line}: {key} must be a string")
    return str(v)


def _message(obj: Any, line: int, session: str | None, default_time: datetime | None) -> Record:
    if not isinstance(obj, dict):
        raise JsonlError(f"line {line}: expected a JSON object")
    text = obj.get("text", obj.get("content"))
    if not isinstance(text, str) or not text.strip():
        raise JsonlError(f"line {line}: missing a non-empty 'text'")
    kind = obj.get("kind")
    if kind is not None and kind not in KINDS:
        raise JsonlError(f"line {line}: kind must be one of {', '.join(KINDS)}")
    session = _opt_str(obj, "session", line) or session
    return Record(
        text=text.strip(),
        line=line,
        time=_time(obj.get("time"), line) or default_time,
        kind=kind,
        tags=_tags(obj.get("tags"), line),
        source=_opt_str(obj, "source", line),
        space=_opt_str(obj, "space", line),
        session=session,
        speaker=_opt_str(obj, "speaker", line) or _opt_str(obj, "role", line),
    )


def parse_jsonl(text: str, check: Callable[[Record], str | None] | None = None) -> list[Record]:
    """All records of a JSONL document, in order; raises JsonlError naming the first bad line.
    ``check`` may refuse a record by saying why (the caller's own rules): its line is then a bad line."""
    out: list[Record] = []
    # Lines end at "\n" only (JSON Lines): str.splitlines() also splits at U+2028, U+0085 and others,
    # which a JSON string may hold unescaped, and so broke valid files in two.
    for n, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise JsonlError(f"line {n}: not valid JSON ({e.msg})") from None
        try:  # a "\ud800" escape decodes to a lone surrogate, which no UTF-8 store can hold
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonlError(f"line {n}: a string holds an invalid Unicode escape (a lone surrogate)") from None
        if isinstance(obj, dict) and "messages" in obj:
            msgs = obj["messages"]
            if not isinstance(msgs, list):
                raise JsonlError(f"line {n}: messages must be a list")
            session = _opt_str(obj, "session", n) or f"line-{n}"
            start = _time(obj.get("time"), n)
            records = [_message(m, n, session, start) for m in msgs]
        else:
            records = [_message(obj, n, None, None)]
        for r in records:
            why = check(r) if check is not None else None
            if why:
                raise JsonlError(f"line {n}: {why}")
        out.extend(records)
    return out
