"""One source's text → the memories it should become (planning, before anything is embedded or written).

Documents (Markdown, text, Org-mode, HTML) become chunks along their own structure; conversations
(memcli's JSONL, ChatGPT and Claude exports) become one episode per turn, in order, each with its
session's source (``file:PATH#SESSION``), its speaker, its real time and its neighbours' text as
extra keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from pathlib import Path

from memcli.context import Context
from memcli.errors import MemcliFailure
from memcli.importers import vault
from memcli.importers.chat_exports import ExportError, parse_export, sniff
from memcli.records import Kind
from memcli.services.ingest_files import Source
from memcli.services.memories import MAX_TEXT_CHARS
from memcli.store import NewMemory, check_space
from memcli.text.chunking import split_text
from memcli.text.jsonl import JsonlError, Record, parse_jsonl
from memcli.text.markdown import Document, parse, split_front_matter


class Skip(Exception):
    """The source cannot be ingested; the message says why (shown in the summary, nothing written)."""


@dataclass(frozen=True)
class VaultNote:
    """A Markdown note as a link target and source: its names, and whether it links anywhere."""

    source: str
    path: Path
    root: Path | None
    aliases: tuple[str, ...]
    has_links: bool


@dataclass(frozen=True)
class Plan:
    memories: list[NewMemory]
    messages: int = 0  # conversation turns in the source (0: a document)


def _epoch(when: date | datetime | None) -> float | None:
    if when is None:
        return None
    if not isinstance(when, datetime):
        when = datetime.combine(when, time(12, 0))  # a day: its middle, in local time
    try:
        ts = (when if when.tzinfo else when.astimezone()).timestamp()
        datetime.fromtimestamp(ts, tz=UTC)  # the store must be able to read it back
    except (OverflowError, OSError, ValueError):  # 0001-01-01 or 9999-12-31 pushed out of range by a zone
        return None  # a date memcli cannot hold is ignored, like one it cannot read
    return ts


def _day_words(when: date | datetime | None) -> str:
    return "" if when is None or _epoch(when) is None else f"{when:%A %d %B %Y}"


def _check_lines(text: str) -> None:
    # One enormous line (minified data, base64) is not a note: chunking it by halves and embedding
    # thousands of pieces took many minutes for 5 MB. Same limit as one `memcli add`.
    longest = max(len(line) for line in text.split("\n"))
    if longest > MAX_TEXT_CHARS:
        raise Skip(f"a line of {longest:,} characters (at most {MAX_TEXT_CHARS:,}): split it into lines or paragraphs")


def plan(ctx: Context, src: Source, text: str) -> Plan | None:
    """What ``src`` becomes; None if it is not a format memcli reads after all (JSON that is not a chat
    export). Raises Skip for a source that cannot be read."""
    fmt = src.fmt
    if fmt in ("json", "maybe-export", "stdin-auto"):
        fallback = {"json": None, "maybe-export": "text", "stdin-auto": "markdown"}[fmt]
        fmt = "chat-export" if sniff(text) else fallback  # type: ignore[assignment]
        if fmt is None:
            return None
    try:
        if fmt == "jsonl":
            return plan_sessions(ctx, src, parse_jsonl(text, _refuse_record), {})
        if fmt == "chat-export":
            return plan_export(ctx, src, text)
    except (JsonlError, ExportError) as e:
        raise Skip(str(e)) from None
    if fmt == "html":
        from memcli.importers.html import parse_html

        doc = parse_html(text)
        for s in doc.sections:
            _check_lines(s.text)
        return Plan(plan_document(ctx, src, doc))
    _check_lines(text)
    if fmt == "org":
        from memcli.importers.org import parse_org

        return Plan(plan_document(ctx, src, parse_org(text, str(src.path or ""))))
    markdown = fmt == "markdown"
    doc = parse(text, str(src.path or ""), markdown=markdown)
    if markdown:
        doc = replace(doc, tags=tuple(dict.fromkeys((*doc.tags, *vault.logseq_tags(text)))))
    return Plan(plan_document(ctx, src, doc))


def vault_note(src: Source, text: str) -> VaultNote | None:
    """A Markdown file as a note of a vault (read for links even when it is unchanged: cheap, no chunking)."""
    if src.fmt != "markdown" or src.path is None:
        return None
    front, _, _ = split_front_matter(text) if text.startswith("---") else ({}, text, 0)
    return VaultNote(src.name, src.path, src.root, tuple(vault.aliases(front, text)), "[[" in text)


def plan_document(ctx: Context, src: Source, doc: Document) -> list[NewMemory]:
    """Sections → chunks, with heading path, tags and date as keys."""
    emb = ctx.embedder
    name = src.path.name if src.path else "stdin"
    out: list[NewMemory] = []
    for section in doc.sections:
        when = section.when or doc.when
        tags = tuple(dict.fromkeys((*doc.tags, *section.tags)))
        heading = " > ".join(
            ([doc.title] if doc.title and doc.title not in section.heading_path else []) + list(section.heading_path)
        )
        keys = " ".join(x for x in (Path(name).stem, heading, _day_words(when), " ".join(tags)) if x)
        # The dense input is text + keys: keep the pair within what the model was trained on.
        budget = max(32, emb.max_tokens - emb.count_tokens(keys))
        for piece in split_text(section.text, budget, emb.count_tokens):
            out.append(
                NewMemory(
                    text=piece, kind=Kind.NOTE, source=src.name, position=len(out), event_at=_epoch(when), tags=tags, keys=keys
                )
            )
    return out


def _refuse_record(r: Record) -> str | None:
    """Why a JSONL record cannot be stored: a bad line skips the file and is named (in line order), rather
    than a usage error that stops the whole ingest."""
    if r.space is not None:
        try:
            check_space(r.space)
        except MemcliFailure as e:
            return e.message
    if len(r.text) > MAX_TEXT_CHARS:
        return f"the text is {len(r.text):,} characters; at most {MAX_TEXT_CHARS:,}"
    return None


def plan_export(ctx: Context, src: Source, text: str) -> Plan:
    """A ChatGPT or Claude export: each conversation a session, each kept turn an episode."""
    kind, conversations = parse_export(text)
    records: list[Record] = []
    titles: dict[str | None, str] = {}
    tag = "chatgpt" if kind == "chatgpt" else "claude"
    for n, conv in enumerate(conversations, 1):
        titles[conv.id] = conv.title
        for t in conv.turns:
            r = Record(text=t.text, line=n, time=t.time or conv.time, tags=(tag,), session=conv.id, speaker=t.role)
            why = _refuse_record(r)
            if why:
                raise Skip(f"conversation {n} ({conv.title[:60]!r}): {why}")
            records.append(r)
    return plan_sessions(ctx, src, records, titles)


def plan_sessions(ctx: Context, src: Source, records: list[Record], titles: dict[str | None, str]) -> Plan:
    """Records → memories; conversation turns get their session's title and neighbours' text as keys."""
    sessions: dict[str | None, list[Record]] = {}
    for r in records:
        sessions.setdefault(r.session, []).append(r)
    window = ctx.settings.ingest.neighbour_keys
    emb = ctx.embedder
    out: list[NewMemory] = []
    messages = 0
    for session, recs in sessions.items():
        source = f"{src.name}#{session}" if session is not None else src.name
        texts = [f"{r.speaker}: {r.text}" if r.speaker else r.text for r in recs]
        position = 0  # order within the session (a turn longer than the model takes becomes several)
        last_time = None
        for i, r in enumerate(recs):
            if session is not None:  # a turn without a time happened when the one before it did
                r = replace(r, time=r.time or last_time)
                last_time = r.time
                messages += 1
            parts = [_day_words(r.time), titles.get(session, "")]
            if session is not None and window > 0:
                parts += texts[max(0, i - window) : i] + texts[i + 1 : i + 1 + window]
            keys = " ".join(p for p in parts if p)
            kind = Kind(r.kind) if r.kind else (Kind.EPISODE if session is not None else Kind.NOTE)
            base = NewMemory(
                text=texts[i],
                kind=kind,
                source=r.source or source,
                position=position,
                event_at=_epoch(r.time),
                tags=r.tags,
                keys=keys,
                space=r.space,
            )
            pieces = split_text(base.text, emb.max_tokens, emb.count_tokens)
            out.extend(replace(base, text=p, position=position + j) for j, p in enumerate(pieces))
            position += len(pieces)
    return Plan(out, messages=messages)
