"""Ingest files, directories and stdin: each file becomes memories, applied all-or-nothing.

Incremental by content hash: an unchanged file costs one hash and one lookup; a changed file keeps
the chunks whose text and keys did not change (with their ids and recall counts) and replaces
exactly the rest. Memories of one file share its source (``file:/abs/path``; a conversation
session in a JSONL file is ``file:/abs/path#SESSION``), which is how they are found again.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from memcli.context import Context
from memcli.errors import MemcliFailure, not_found, usage_error
from memcli.records import Kind, Memory
from memcli.services.memories import MAX_TEXT_CHARS
from memcli.store import NewMemory, check_space, content_hash, embed_input
from memcli.text.chunking import split_text
from memcli.text.jsonl import JsonlError, Record, parse_jsonl
from memcli.text.markdown import parse

MARKDOWN = {".md", ".markdown", ".mdown", ".mkd"}
TEXT = {".txt", ".text"}
JSONL = {".jsonl", ".ndjson"}
FORMATS = ("auto", "markdown", "text", "jsonl")
IGNORE_FILE = ".memcliignore"


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: str  # added | updated | unchanged | removed | skipped
    added: int = 0
    removed: int = 0
    kept: int = 0
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class IngestReport:
    files: tuple[FileOutcome, ...]
    dry_run: bool
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def chunks_added(self) -> int:
        return sum(f.added for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "counts": {s: self.count(s) for s in ("added", "updated", "unchanged", "removed", "skipped")},
            "chunks_added": self.chunks_added,
            "files": [f.to_json() for f in self.files],
        }


@dataclass(frozen=True)
class Source:
    """One unit applied all-or-nothing: a file, or stdin."""

    name: str  # the memories' source prefix
    shown: str  # what the user sees in the summary
    fmt: str  # markdown | text | jsonl
    path: Path | None  # None for stdin
    data: bytes | None = None  # stdin's bytes


def _format_of(path: Path, fmt: str) -> str | None:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in MARKDOWN:
        return "markdown"
    if suffix in TEXT:
        return "text"
    if suffix in JSONL:
        return "jsonl"
    return None


def discover(
    roots: Sequence[Path], *, fmt: str = "auto", include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Iterator[Source]:
    """Files under ``roots``. Hidden files/directories, ``exclude`` globs and ``.memcliignore``
    patterns (gitignore syntax, per directory tree) are skipped; ``include`` globs narrow the set."""
    import pathspec

    inc = pathspec.GitIgnoreSpec.from_lines(include) if include else None
    for root in roots:
        if not root.exists():
            raise not_found(f"no such file or directory: {root}", hint="Check the path.")
        if root.is_file():
            f = _format_of(root, fmt)
            yield Source(f"file:{root.resolve()}", str(root), f or "text", root)
            continue
        patterns = list(exclude)
        ignore = root / IGNORE_FILE
        if ignore.is_file():
            patterns += ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        exc = pathspec.GitIgnoreSpec.from_lines(patterns)
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop: do not walk it twice
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            rel_dir = Path(dirpath).relative_to(root)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not exc.match_file(f"{rel_dir / d}/"))
            for name in sorted(filenames):
                p = Path(dirpath) / name
                rel = str(rel_dir / name)
                if name.startswith(".") or exc.match_file(rel) or (inc is not None and not inc.match_file(rel)):
                    continue
                f = _format_of(p, fmt)
                if f is not None:
                    yield Source(f"file:{p.resolve()}", str(p), f, p)


def _read(src: Source, max_bytes: int) -> tuple[str | None, str, str]:
    """(text, sha256, reason-if-skipped)."""
    if src.data is not None:
        data = src.data
    else:
        assert src.path is not None
        try:
            st = src.path.stat()
            if not stat.S_ISREG(st.st_mode):
                return None, "", "not a regular file"  # a FIFO or device would block or never end
            size = st.st_size
            if size > max_bytes:
                return None, "", f"too large ({size:,} bytes; the limit is {max_bytes:,}: [ingest] max_file_mb)"
            data = src.path.read_bytes()
        except PermissionError:
            return None, "", "permission denied"
        except OSError as e:
            return None, "", f"cannot read: {e.strerror or e}"
    if b"\x00" in data[:8192]:
        return None, "", "binary file"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "", "not UTF-8 text"
    if not text.strip():
        return None, "", "empty"
    return text, hashlib.sha256(data).hexdigest(), ""


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
    return "" if when is None else f"{when:%A %d %B %Y}"


def plan_document(ctx: Context, src: Source, text: str) -> list[NewMemory]:
    """Markdown/text → chunks along the document's structure, with heading path, tags and date as keys."""
    emb = ctx.embedder
    name = src.path.name if src.path else "stdin"
    doc = parse(text, str(src.path or ""), markdown=src.fmt == "markdown")
    event_at = _epoch(doc.when)
    if event_at is None:
        doc = replace(doc, when=None)  # an out-of-range date is dropped from the keys too
    out: list[NewMemory] = []
    for section in doc.sections:
        heading = " > ".join(
            ([doc.title] if doc.title and doc.title not in section.heading_path else []) + list(section.heading_path)
        )
        keys = " ".join(x for x in (Path(name).stem, heading, _day_words(doc.when), " ".join(doc.tags)) if x)
        # The dense input is text + keys: keep the pair within what the model was trained on.
        budget = max(32, emb.max_tokens - emb.count_tokens(keys))
        for piece in split_text(section.text, budget, emb.count_tokens):
            out.append(
                NewMemory(
                    text=piece, kind=Kind.NOTE, source=src.name, position=len(out), event_at=event_at, tags=doc.tags, keys=keys
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


def plan_jsonl(ctx: Context, src: Source, text: str) -> list[NewMemory]:
    """JSONL records → memories; conversation turns get their neighbours' text as extra keys."""
    records = parse_jsonl(text, _refuse_record)
    sessions: dict[str | None, list[Record]] = {}
    for r in records:
        sessions.setdefault(r.session, []).append(r)
    window = ctx.settings.ingest.neighbour_keys
    emb = ctx.embedder
    out: list[NewMemory] = []
    for session, recs in sessions.items():
        source = f"{src.name}#{session}" if session is not None else src.name
        texts = [f"{r.speaker}: {r.text}" if r.speaker else r.text for r in recs]
        position = 0  # order within the session (a turn longer than the model takes becomes several)
        last_time = None
        for i, r in enumerate(recs):
            if session is not None:  # a turn without a time happened when the one before it did
                r = replace(r, time=r.time or last_time)
                last_time = r.time
            parts = [_day_words(r.time)]
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
    return out


def ingest(
    ctx: Context,
    paths: Sequence[Path],
    *,
    space: str | None = None,
    fmt: str = "auto",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    stdin: bytes | None = None,
    stdin_name: str | None = None,
    prune_missing: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
) -> IngestReport:
    """Ingest ``paths`` (and ``stdin`` bytes, if given). ``progress(files_done, files_total, chunks)``."""
    if fmt not in FORMATS:
        raise usage_error(f"unknown format {fmt!r}", hint=f"Use one of: {', '.join(FORMATS)}.")
    space = ctx.space(space)
    roots = [p.expanduser() for p in paths]
    sources = list(discover(roots, fmt=fmt, include=include, exclude=[*ctx.settings.ingest.exclude, *exclude]))
    if stdin is not None:
        name = stdin_name or "stdin:" + hashlib.sha256(stdin).hexdigest()[:16]
        sources.append(Source(name, "(stdin)", "markdown" if fmt == "auto" else fmt, None, stdin))
    outcomes: list[FileOutcome] = []
    chunks = 0
    interrupted = False
    try:
        for src in sources:
            if progress:
                progress(len(outcomes), len(sources), chunks)
            outcome = _ingest_one(ctx, space, src, dry_run)
            chunks += outcome.added
            outcomes.append(outcome)
        if prune_missing:
            outcomes.extend(_prune_missing(ctx, space, roots, {s.name for s in sources}, dry_run))
    except KeyboardInterrupt:
        interrupted = True  # every file already applied is complete; the rest is untouched
    if progress and not interrupted:
        progress(len(outcomes), len(sources), chunks)
    return IngestReport(tuple(outcomes), dry_run, interrupted)


def _ingest_one(ctx: Context, space: str, src: Source, dry_run: bool) -> FileOutcome:
    store = ctx.store
    text, digest, reason = _read(src, ctx.settings.ingest.max_file_mb * 1024 * 1024)
    if text is None:
        return FileOutcome(src.shown, "skipped", reason=reason)
    if src.fmt != "jsonl":
        # One enormous line (minified data, base64) is not a note: chunking it by halves and embedding
        # thousands of pieces took many minutes for 5 MB. Same limit as one `memcli add`.
        longest = max(len(line) for line in text.split("\n"))
        if longest > MAX_TEXT_CHARS:
            return FileOutcome(
                src.shown,
                "skipped",
                reason=f"a line of {longest:,} characters (at most {MAX_TEXT_CHARS:,}): split it into lines or paragraphs",
            )
    if store.catalog.source_hash(space, src.name) == digest:
        return FileOutcome(src.shown, "unchanged", kept=len(store.catalog.by_source_prefix(src.name)))
    try:
        planned = plan_jsonl(ctx, src, text) if src.fmt == "jsonl" else plan_document(ctx, src, text)
    except JsonlError as e:
        return FileOutcome(src.shown, "skipped", reason=str(e))
    old = store.catalog.by_source_prefix(src.name)
    by_key: dict[tuple[str, str, str, str], Memory] = {}
    for m in old:
        by_key.setdefault((m.space, m.source, m.content_hash, m.keys), m)
    kept: set[str] = set()
    fresh: list[NewMemory] = []
    for c in planned:
        prev = by_key.get((c.space or space, c.source, content_hash(c.text), c.keys))
        if prev is not None and prev.id not in kept and prev.state == "active":
            kept.add(prev.id)
        else:
            fresh.append(c)
    remove = [m for m in old if m.id not in kept]
    status = "updated" if old else "added"
    if not dry_run:
        emb = ctx.embedder
        vectors = emb.embed_documents([embed_input(c.text, c.keys) for c in fresh])
        store.apply(space, list(zip(fresh, vectors)), emb.model_id, delete=remove, source=(src.name, digest))
    return FileOutcome(src.shown, status, added=len(fresh), removed=len(remove), kept=len(kept))


def _prune_missing(ctx: Context, space: str, roots: Sequence[Path], seen: set[str], dry_run: bool) -> list[FileOutcome]:
    """Forget the memories of files under ``roots`` that were ingested before and no longer exist."""
    store = ctx.store
    prefixes = [f"file:{r.resolve()}" for r in roots if r.is_dir()]
    out: list[FileOutcome] = []
    for name in store.catalog.source_names(space):
        if name in seen or not any(name == p or name.startswith(p.rstrip("/") + "/") for p in prefixes):
            continue
        if Path(name.removeprefix("file:")).exists():
            continue  # present but excluded now: keep what was ingested
        old = store.catalog.by_source_prefix(name)
        if not dry_run:
            store.apply(space, [], ctx.embedder.model_id, delete=old, source=(name, None))
        out.append(FileOutcome(name.removeprefix("file:"), "removed", removed=len(old), reason="file no longer exists"))
    return out
