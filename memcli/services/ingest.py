"""Ingest files, directories and stdin: each file becomes memories, applied all-or-nothing.

Incremental by content hash: an unchanged file costs one hash and one lookup; a changed file keeps
the chunks whose text and keys did not change (with their ids and recall counts) and replaces
exactly the rest. Memories of one file share its source (``file:/abs/path``; a conversation
session in a JSONL file or a chat export is ``file:/abs/path#SESSION``), which is how they are
found again.

A run reads and plans every file first (so the total to embed is known and progress has an ETA),
then embeds and writes file by file, then draws the wikilinks between the notes it saw
(``ingest_links``). Walking and reading: ``ingest_files``; what each format becomes: ``ingest_plan``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memcli.context import Context
from memcli.errors import usage_error
from memcli.records import Kind, Memory
from memcli.services.ingest_files import FORMATS, Source, discover, file_type, read
from memcli.services.ingest_plan import Skip, VaultNote, plan, vault_note
from memcli.store import NewMemory, content_hash, embed_input

EMBED_BATCH = 16  # texts embedded between two progress reports


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
class IngestProgress:
    """Where a run is. While ``reading``, files are being read and planned (``files_done`` of
    ``files_total`` read); then the changed files are embedded and written: ``chunks_done`` of
    ``chunks_total`` memories to embed, of which ``messages_*`` are conversation turns."""

    reading: bool
    files_done: int
    files_total: int
    chunks_done: int = 0
    chunks_total: int = 0
    messages_done: int = 0
    messages_total: int = 0


@dataclass(frozen=True)
class IngestReport:
    files: tuple[FileOutcome, ...]
    dry_run: bool
    interrupted: bool = False
    # Files seen but not read (no reader for their type; JSON that is not a chat export), by type,
    # most common first. Not a fault: they are not counted as skipped.
    ignored: tuple[tuple[str, int], ...] = ()
    links_added: int = 0  # wikilinks between notes drawn in this run

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def chunks_added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def ignored_files(self) -> int:
        return sum(n for _, n in self.ignored)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "counts": {s: self.count(s) for s in ("added", "updated", "unchanged", "removed", "skipped")},
            "chunks_added": self.chunks_added,
            "links_added": self.links_added,
            "ignored": {"files": self.ignored_files, "types": dict(self.ignored)},
            "files": [f.to_json() for f in self.files],
        }


@dataclass
class _Change:
    """A file whose plan differs from what the store holds: what to embed and write, what to drop."""

    src: Source
    digest: str
    status: str
    fresh: list[NewMemory]
    remove: list[Memory]
    kept: int
    messages: int = 0
    slot: int = 0  # its place in the report (the order files were found)


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
    progress: Callable[[IngestProgress], None] | None = None,
) -> IngestReport:
    """Ingest ``paths`` (and ``stdin`` bytes, if given); ``progress`` is told where the run is."""
    if fmt not in FORMATS:
        raise usage_error(f"unknown format {fmt!r}", hint=f"Use one of: {', '.join(FORMATS)}.")
    space = ctx.space(space)
    roots = [p.expanduser() for p in paths]
    ignored: Counter[str] = Counter()
    sources = list(
        discover(roots, fmt=fmt, include=include, exclude=[*ctx.settings.ingest.exclude, *exclude], ignored=ignored)
    )
    if stdin is not None:
        name = stdin_name or "stdin:" + hashlib.sha256(stdin).hexdigest()[:16]
        sources.append(Source(name, "(stdin)", "stdin-auto" if fmt == "auto" else fmt, None, stdin))
    report = progress or (lambda _: None)
    slots: list[FileOutcome | None] = []
    changes: list[_Change] = []
    notes: list[VaultNote] = []
    interrupted = False
    links = 0
    try:
        for i, src in enumerate(sources):
            report(IngestProgress(True, i, len(sources)))
            result = _prepare(ctx, space, src, notes)
            if isinstance(result, _Change):
                result.slot = len(slots)
                changes.append(result)
                slots.append(None)
            elif result is None and src.path is not None:
                ignored[file_type(src.path)] += 1
            elif result is not None:
                slots.append(result)
        _apply_all(ctx, space, changes, slots, dry_run, report)
        if not dry_run and notes:
            from memcli.services.ingest_links import resolve

            links = resolve(ctx, space, notes)
        if prune_missing:
            slots.extend(_prune_missing(ctx, space, roots, {s.name for s in sources}, dry_run))
    except KeyboardInterrupt:
        interrupted = True  # every file already applied is complete; the rest is untouched
    files = tuple(f for f in slots if f is not None)
    return IngestReport(files, dry_run, interrupted, tuple(sorted(ignored.items(), key=lambda x: (-x[1], x[0]))), links)


def _prepare(ctx: Context, space: str, src: Source, notes: list[VaultNote]) -> FileOutcome | _Change | None:
    """Read and plan one source: its outcome if nothing is to be written (skipped, unchanged), the
    change to apply, or None if it is not a format memcli reads (counted as ignored)."""
    store = ctx.store
    text, digest, reason = read(src, ctx.settings.ingest.max_file_mb * 1024 * 1024)
    if text is None:
        return FileOutcome(src.shown, "skipped", reason=reason)
    note = vault_note(src, text)
    if note is not None:
        notes.append(note)
    if store.catalog.source_hash(space, src.name) == digest:
        return FileOutcome(src.shown, "unchanged", kept=len(store.catalog.by_source_prefix(src.name)))
    try:
        planned = plan(ctx, src, text)
    except Skip as e:
        return FileOutcome(src.shown, "skipped", reason=str(e))
    if planned is None:
        return None
    old = store.catalog.by_source_prefix(src.name)
    by_key: dict[tuple[str, str, str, str], Memory] = {}
    for m in old:
        by_key.setdefault((m.space, m.source, m.content_hash, m.keys), m)
    kept: set[str] = set()
    fresh: list[NewMemory] = []
    for c in planned.memories:
        prev = by_key.get((c.space or space, c.source, content_hash(c.text), c.keys))
        if prev is not None and prev.id not in kept and prev.state == "active":
            kept.add(prev.id)
        else:
            fresh.append(c)
    remove = [m for m in old if m.id not in kept]
    turns = sum(1 for c in fresh if c.kind is Kind.EPISODE) if planned.messages else 0
    return _Change(src, digest, "updated" if old else "added", fresh, remove, len(kept), turns)


def _apply_all(
    ctx: Context,
    space: str,
    changes: list[_Change],
    slots: list[FileOutcome | None],
    dry_run: bool,
    report: Callable[[IngestProgress], None],
) -> None:
    """Embed and write each change, all-or-nothing per file, telling ``report`` as embedding goes."""
    emb = ctx.embedder
    chunks_total = sum(len(c.fresh) for c in changes)
    messages_total = sum(c.messages for c in changes)
    done = messages = 0
    for n, change in enumerate(changes):
        at = IngestProgress(False, n, len(changes), done, chunks_total, messages, messages_total)
        report(at)
        if not dry_run:
            texts = [embed_input(c.text, c.keys) for c in change.fresh]
            vectors = []
            for i in range(0, len(texts), EMBED_BATCH):
                vectors += emb.embed_documents(texts[i : i + EMBED_BATCH])
                share = change.messages * len(vectors) // max(1, len(texts))
                report(IngestProgress(False, n, len(changes), done + len(vectors), chunks_total, messages + share, messages_total))
            ctx.store.apply(
                space, list(zip(change.fresh, vectors)), emb.model_id, delete=change.remove, source=(change.src.name, change.digest)
            )
        done += len(change.fresh)
        messages += change.messages
        slots[change.slot] = FileOutcome(
            change.src.shown, change.status, added=len(change.fresh), removed=len(change.remove), kept=change.kept
        )
    report(IngestProgress(False, len(changes), len(changes), done, chunks_total, messages, messages_total))


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
