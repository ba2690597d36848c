"""Markdown and plain-text documents → sections with their heading path, tags and date.

Pure functions: the ingest service reads files and applies what this returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_TAG = re.compile(r"(?<![\w#/&])#([A-Za-z][\w-]{1,40})")
JOURNAL_NAME = re.compile(r"(?<!\d)(\d{4})[-_/](\d{2})[-_/](\d{2})(?!\d)")


@dataclass(frozen=True)
class Section:
    heading_path: tuple[str, ...]
    text: str
    line: int  # 1-based line where the section's text starts
    # Formats whose sections carry their own time and tags (Org-mode headings) set these; a
    # Markdown section takes its document's.
    when: date | datetime | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    title: str | None
    tags: tuple[str, ...]
    when: date | datetime | None
    sections: tuple[Section, ...]
    meta: dict[str, Any] = field(default_factory=dict)


def split_front_matter(text: str) -> tuple[dict[str, Any], str, int]:
    """YAML front matter (``---`` … ``---`` at the top) → (mapping, body, lines consumed).

    Front matter that is not a YAML mapping is left in the body: it is the user's text, not ours."""
    if not text.startswith("---"):
        return {}, text, 0
    lines = text.split("\n")
    for i in range(1, min(len(lines), 200)):
        if lines[i].strip() in ("---", "..."):
            import yaml

            try:
                data = yaml.safe_load("\n".join(lines[1:i]))
            except (yaml.YAMLError, ValueError, OverflowError, RecursionError):  # ValueError: "date: 0000-00-00"
                return {}, text, 0
            if not isinstance(data, dict):
                return {}, text, 0
            return data, "\n".join(lines[i + 1 :]), i + 1
    return {}, text, 0


def _as_tags(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t.strip().lstrip("#") for t in re.split(r"[,\s]+", value) if t.strip()]
    if isinstance(value, list):
        return [str(t).strip().lstrip("#") for t in value if str(t).strip()]
    return []


def _as_when(value: Any) -> date | datetime | None:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def date_from_path(path: str) -> date | None:
    """Journal-style names: ``2024-03-01.md``, ``2024/03/01.md``, ``2024_03_01 notes.md``."""
    for m in reversed(list(JOURNAL_NAME.finditer(path))):
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
    return None


def parse(text: str, path: str = "", *, markdown: bool = True) -> Document:
    meta, body, offset = split_front_matter(text) if markdown else ({}, text, 0)
    tags = _as_tags(meta.get("tags", [])) + _as_tags(meta.get("tag", []))
    title = str(meta["title"]) if meta.get("title") else None
    when = _as_when(meta.get("date")) or date_from_path(path)
    sections: list[Section] = []
    path_stack: list[tuple[int, str]] = []
    buf: list[str] = []
    start = offset + 1
    in_fence = False

    def flush(next_start: int) -> None:
        nonlocal buf, start
        chunk = "\n".join(buf).strip()
        if chunk:
            sections.append(Section(tuple(h for _, h in path_stack), chunk, start))
        buf = []
        start = next_start

    for n, line in enumerate(body.split("\n"), offset + 1):
        if markdown and FENCE.match(line):
            in_fence = not in_fence
        m = HEADING.match(line) if markdown and not in_fence else None
        if m:
            flush(n + 1)
            level = len(m.group(1))
            while path_stack and path_stack[-1][0] >= level:
                path_stack.pop()
            path_stack.append((level, m.group(2)))
            continue
        if markdown and not in_fence:
            tags.extend(INLINE_TAG.findall(line))
        buf.append(line)
    flush(0)
    if title is None and sections and sections[0].heading_path:
        title = sections[0].heading_path[0]
    return Document(title, tuple(dict.fromkeys(tags)), when, tuple(sections), meta)
