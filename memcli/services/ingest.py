"""Ingest files and directories of notes: each file becomes chunks, applied all-or-nothing.

Incremental by content hash: an unchanged file costs one hash and one lookup; a changed file keeps
the chunks whose text did not change (with their ids and recall counts) and replaces exactly the rest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from memcli.context import Context
from memcli.errors import not_found
from memcli.records import Kind, Memory
from memcli.store import NewMemory, content_hash
from memcli.text.chunking import split_text
from memcli.text.markdown import parse

MARKDOWN = {".md", ".markdown", ".mdown", ".mkd"}
TEXT = {".txt", ".text"}
MAX_FILE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: str  # added | updated | unchanged | skipped
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
            "counts": {s: self.count(s) for s in ("added", "updated", "unchanged", "skipped")},
            "chunks_added": self.chunks_added,
            "files": [f.to_json() for f in self.files],
        }


def discover(paths: Sequence[Path]) -> Iterator[tuple[Path, str]]:
    """Yield (file, reason-to-skip or ""). Hidden files and directories are not entered."""
    for root in paths:
        if not root.exists():
            raise not_found(f"no such file or directory: {root}", hint="Check the path.")
        if root.is_file():
            yield root, ""
            continue
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                p = Path(dirpath) / name
                if p.suffix.lower() in MARKDOWN | TEXT:
                    yield p, ""


def _read(path: Path) -> tuple[str | None, str, str]:
    """(text, sha256, reason-if-skipped)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, "", f"too large ({size:,} bytes; the limit is {MAX_FILE_BYTES:,})"
        data = path.read_bytes()
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


def _when_epoch(when: date | datetime | None) -> float | None:
    if when is None:
        return None
    if not isinstance(when, datetime):
        when = datetime.combine(when, time(12, 0))  # a day: its middle, in local time
    return (when if when.tzinfo else when.astimezone()).timestamp()


def _day_words(when: date | datetime | None) -> str:
    return "" if when is None else f"{when:%A %d %B %Y}"


def plan_chunks(ctx: Context, path: Path, text: str, source: str) -> list[NewMemory]:
    emb = ctx.embedder
    doc = parse(text, str(path), markdown=path.suffix.lower() in MARKDOWN)
    event_at = _when_epoch(doc.when)
    out: list[NewMemory] = []
    for section in doc.sections:
        heading = " > ".join(
            ([doc.title] if doc.title and doc.title not in section.heading_path else []) + list(section.heading_path)
        )
        for piece in split_text(section.text, emb.max_tokens, emb.count_tokens):
            keys = " ".join(x for x in (path.stem, heading, _day_words(doc.when), " ".join(doc.tags)) if x)
            out.append(
                NewMemory(
                    text=piece,
                    kind=Kind.NOTE,
                    source=source,
                    position=len(out),
                    event_at=event_at,
                    tags=doc.tags,
                    keys=keys,
                )
            )
    return out


def ingest(
    ctx: Context,
    paths: Sequence[Path],
    *,
    space: str | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> IngestReport:
    space = ctx.space(space)
    files = list(discover([p.expanduser() for p in paths]))
    outcomes: list[FileOutcome] = []
    interrupted = False
    try:
        for n, (path, _) in enumerate(files, 1):
            if progress:
                progress(n - 1, len(files), str(path))
            outcomes.append(_ingest_file(ctx, space, path, dry_run))
    except KeyboardInterrupt:
        interrupted = True  # every file already applied is complete; the rest is untouched
    if progress and not interrupted:
        progress(len(outcomes), len(files), "")
    return IngestReport(tuple(outcomes), dry_run, interrupted)


def _ingest_file(ctx: Context, space: str, path: Path, dry_run: bool) -> FileOutcome:
    store = ctx.store
    shown = str(path)
    text, digest, reason = _read(path)
    if text is None:
        return FileOutcome(shown, "skipped", reason=reason)
    source = f"file:{path.resolve()}"
    if store.catalog.source_hash(space, source) == digest:
        return FileOutcome(shown, "unchanged", kept=len(store.catalog.by_source(space, source)))
    old = store.catalog.by_source(space, source)
    chunks = plan_chunks(ctx, path, text, source)
    old_by_hash: dict[str, Memory] = {}
    for m in old:
        old_by_hash.setdefault(m.content_hash, m)
    keep_ids: set[str] = set()
    fresh: list[NewMemory] = []
    for c in chunks:
        prev = old_by_hash.get(content_hash(c.text))
        if prev is not None and prev.id not in keep_ids and prev.keys == c.keys and prev.state == "active":
            keep_ids.add(prev.id)
        else:
            fresh.append(c)
    remove = [m for m in old if m.id not in keep_ids]
    status = "updated" if old else "added"
    if not dry_run:
        vectors = ctx.embedder.embed_documents([c.text for c in fresh])
        store.apply(space, list(zip(fresh, vectors)), ctx.embedder.model_id, delete=remove, source=(source, digest))
    return FileOutcome(shown, status, added=len(fresh), removed=len(remove), kept=len(keep_ids))
