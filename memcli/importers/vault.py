"""Obsidian and Logseq vaults: the links between notes, the names a note answers to, and the
folders and files that are the application's own rather than the user's notes.

``[[Note]]``, ``[[Note|shown text]]``, ``[[Note#Heading]]``, ``[[Note#^block]]``, ``![[Note]]`` (an
embed) and Logseq's ``#[[Page name]]`` all link to the note called "Note". A note answers to its
file name (without the extension), its path in the vault, the ``aliases`` of its YAML front
matter, and Logseq's ``alias::`` / ``title::`` page properties. Names compare case-insensitively,
as both applications do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

_LINK = re.compile(r"\[\[([^\[\]\n]+?)\]\]")
_FENCED = re.compile(r"^\s*(```|~~~).*?^\s*\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_PROPERTY = re.compile(r"^\s*-?\s*([A-Za-z][\w-]*)::\s*(.*?)\s*$")
# Not the user's notes: Logseq's backups and conflict versions of pages (copies of notes that are
# ingested anyway). .obsidian/ and .logseq/ are hidden folders, skipped like every hidden path.
APP_FOLDERS = ("logseq/bak", "logseq/version-files")


@dataclass(frozen=True)
class Link:
    target: str  # the note's name as written
    heading: str | None  # [[Note#Heading]]: the heading inside it


def links(text: str) -> list[Link]:
    """The wikilinks in ``text`` in order, once each; links inside code are not links."""
    text = _INLINE_CODE.sub(" ", _FENCED.sub(" ", text))
    out: dict[tuple[str, str | None], Link] = {}
    for m in _LINK.finditer(text):
        inner = m.group(1)
        target = inner.split("|", 1)[0].rstrip("\\")  # "\|" escapes the bar inside a table
        heading: str | None = None
        if "#" in target:
            target, heading = target.split("#", 1)
            heading = heading.strip().lstrip("^").strip() or None
        target = target.strip()
        if target:  # [[#Heading]] points inside the same note
            out.setdefault((key(target), heading), Link(target, heading))
    return list(out.values())


def key(name: str) -> str:
    """How a note's name compares: case, surrounding space, a Markdown extension and Logseq's file-name
    escapes for "/" (``a___b.md``, ``a%2Fb.md``) do not matter."""
    name = unquote(name.strip())
    for suffix in (".md", ".markdown"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return " ".join(name.replace("___", "/").split()).casefold()


def page_properties(text: str) -> dict[str, str]:
    """Logseq page properties: ``key:: value`` lines at the top of a page (its first block)."""
    props: dict[str, str] = {}
    for line in text.split("\n"):
        if not line.strip():
            if props:
                break
            continue
        m = _PROPERTY.match(line)
        if m is None:
            break
        props[m.group(1).lower()] = m.group(2)
    return props


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip().strip("[]").strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return []


def aliases(front_matter: dict[str, Any], text: str) -> list[str]:
    """Other names of a note: front matter ``aliases``/``alias``, Logseq ``alias::`` and ``title::``."""
    names = _names(front_matter.get("aliases")) + _names(front_matter.get("alias"))
    props = page_properties(text)
    names += _names(props.get("alias", "")) + _names(props.get("title", ""))
    return list(dict.fromkeys(n for n in names if n))


def logseq_tags(text: str) -> list[str]:
    """Logseq ``tags::`` page property (front matter tags are read by memcli.text.markdown)."""
    return [t.lstrip("#") for t in _names(page_properties(text).get("tags", ""))]
