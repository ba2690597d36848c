"""Org-mode files → a Document: each heading a section, with its own time and tags.

Parsed with orgparse (Org's grammar — drawers, planning lines, timestamps with repeaters and
ranges, tags inherited from parent headings and ``#+FILETAGS`` — is more than a few regexes get
right). A section's time is the first timestamp in its heading or text (``<2024-03-01 Fri>``,
``[2024-03-01 Fri 10:00]``), else its SCHEDULED, DEADLINE or CLOSED date, else its parent's; the
document's is ``#+DATE``. A heading with no text of its own (a TODO item) is its own text.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from memcli.text.markdown import Document, Section, date_from_path

_TIMESTAMP = re.compile(r"\s*[<\[]\d{4}-\d{2}-\d{2}[^>\]\n]*[>\]](--[<\[][^>\]\n]*[>\]])?")
_KEYWORD_LINE = re.compile(r"^\s*#\+\w+:.*$", re.MULTILINE)


def _first_time(node: Any) -> date | datetime | None:
    stamps = [d.start for d in node.get_timestamps(active=True, inactive=True, range=True, point=True) if d and d.start]
    if stamps:
        return stamps[0]  # type: ignore[no-any-return]
    for planned in (node.scheduled, node.deadline, node.closed):
        if planned and planned.start:
            return planned.start  # type: ignore[no-any-return]
    return None


def _file_date(root: Any) -> date | datetime | None:
    value = root.get_file_property("DATE")
    if not value:
        return None
    m = re.search(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2})?", str(value))
    if m is None:
        return None
    try:
        return datetime.fromisoformat(m.group(0).replace(" ", "T")) if len(m.group(0)) > 10 else date.fromisoformat(m.group(0))
    except ValueError:
        return None


def parse_org(text: str, path: str = "") -> Document:
    import orgparse

    root = orgparse.loads(text)
    title = root.get_file_property("TITLE")
    file_tags = tuple(root.get_file_property_list("FILETAGS") or ())
    when = _file_date(root) or date_from_path(path)
    sections: list[Section] = []
    preface = _KEYWORD_LINE.sub("", root.get_body(format="plain") or "").strip()
    if preface:
        sections.append(Section((), preface, 1, when, file_tags))
    times: dict[int, date | datetime | None] = {}
    stack: list[tuple[int, str]] = []
    for node in root[1:]:
        heading = _TIMESTAMP.sub("", node.heading).strip()
        while stack and stack[-1][0] >= node.level:
            stack.pop()
        stack.append((node.level, heading))
        parent = node.parent
        own = _first_time(node)
        times[id(node)] = (own or times.get(id(parent))) if parent is not None else own
        body = (node.get_body(format="plain") or "").strip()
        if not body:  # a heading alone (a TODO item, an event) is the note; one over others is their path
            if node.children and not node.todo and own is None:
                continue
            body = " ".join(x for x in (node.todo, heading) if x)
            if not body:
                continue
        tags = tuple(dict.fromkeys((*file_tags, *sorted(node.tags))))
        sections.append(Section(tuple(h for _, h in stack), body, int(node.linenumber), times[id(node)], tags))
    return Document(str(title) if title else None, file_tags, when, tuple(sections), {})
