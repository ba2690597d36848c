"""`memcli export` / `memcli import`: every memory, with everything memcli knows about it, as JSONL.

Format (version 1; documented in the README, "Export and import"), one JSON object per line:

1. a header: {"format": "memcli-export", "version": 1, "memcli": ..., "exported_at": ISO,
   "embed_model": ..., "embed_dim": ..., "space": NAME or null (all), "trash": bool};
2. one {"type": "memory", ...} per memory, in the order they were written: every catalog column
   (times as Unix epoch seconds, exactly as stored) and the embedding as base64 of little-endian
   float32, so an import into a store with the same model needs no re-embedding;
3. {"type": "link", ...} for each link touching an exported memory, {"type": "audit", ...} for each
   audit entry of one, {"type": "source", ...} for each ingested source of the exported spaces;
4. a trailer {"type": "end", "memories": N, "links": N, "audit": N, "sources": N}: a file without
   it, or whose counts disagree, was cut short and is refused.

Import checks the whole file before writing anything, so a malformed line changes nothing. It keeps
ids (an id already in the store is skipped, with its audit entries), writes memories in batches —
each batch, with its audit entries, one transaction, then replayed into the vector index the way the
store replays an interrupted write (rows marked ``pending_add``, then ``store.replay_pending()``) — and
re-embeds only rows whose model is not the store's. Links land when both ends exist afterwards.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from memcli.context import Context
from memcli.errors import not_found, store_error, usage_error
from memcli.paths import ensure_private_dir
from memcli.records import Kind, ts
from memcli.store import check_space, embed_input, rows, vec_to_blob
from memcli.store.rows import Snapshot

FORMAT = "memcli-export"
VERSION = 1
BATCH = 500
TIMES = ("recorded_at", "event_at", "last_access", "trashed_at", "valid_from", "valid_until", "retired_at")
ID_RE = re.compile(r"[0-9a-f]{4,32}")


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportResult:
    path: str  # "-" for a stream
    memories: int
    trashed: int  # of which in the trash
    links: int
    audit: int
    sources: int
    spaces: tuple[str, ...]
    embed_model: str | None
    markdown_dir: str | None = None
    markdown_files: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "spaces": list(self.spaces)}


@dataclass(frozen=True)
class ImportResult:
    source: str
    added: tuple[str, ...]  # ids written
    skipped: tuple[str, ...]  # ids already in the store: left as they are
    reembedded: int  # rows whose embedding model was not the store's
    links: int  # links written (or already there)
    dangling_links: int  # links whose other end is in neither the file nor the store
    audit: int  # audit entries carried over
    sources: int  # ingested-source records added
    spaces: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "added": list(self.added), "skipped": list(self.skipped), "spaces": list(self.spaces)}


# -- export ----------------------------------------------------------------------------------------
def export(
    ctx: Context,
    dest: Path | IO[str] | None,
    *,
    space: str | None = None,
    trash: bool = True,
    markdown: Path | None = None,
) -> ExportResult:
    """Write the export to ``dest`` (a path, written atomically and owner-only; a text stream; or None
    for only the Markdown tree) and, with ``markdown``, a readable tree: DIR/SPACE/KIND.md.
    ``space`` None exports every space; ``trash`` includes what is in the trash."""
    if dest is None and markdown is None:
        raise usage_error("nothing to write", hint="Give a FILE ('-' for stdout), --markdown DIR, or both.")
    if space is not None:
        check_space(space)
    if isinstance(dest, Path) and (not dest.name or dest.is_dir()):
        raise usage_error(f"cannot write the export to {str(dest)!r}: not a file name", hint="Give a FILE, e.g. memories.jsonl.")
    cat = ctx.store.catalog  # opening the store first completes any interrupted write
    with Snapshot(cat.path, space=space, trash=trash) as snap:
        result = _write_jsonl(snap, dest, space, trash) if dest is not None else None
        files = _write_markdown(snap, markdown) if markdown is not None else 0
        if result is None:
            spaces, n, trashed = snap.summary()
            result = ExportResult("", n, trashed, 0, 0, 0, spaces, cat.meta("embed_model"))
    if markdown is not None:
        result = replace(result, markdown_dir=str(markdown), markdown_files=files)
    return result


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def _write_jsonl(snap: Snapshot, dest: Path | IO[str], space: str | None, trash: bool) -> ExportResult:
    meta = snap.meta()
    from memcli import __version__

    model: str | None = meta.get("embed_model")
    header = {
        "format": FORMAT,
        "version": VERSION,
        "memcli": __version__,
        "exported_at": ts(datetime.now(UTC)),
        "embed_model": model,
        "embed_dim": int(meta["embed_dim"]) if meta.get("embed_dim") else None,
        "space": space,
        "trash": trash,
    }
    counts = {"memories": 0, "links": 0, "audit": 0, "sources": 0}
    ids: set[str] = set()
    spaces: set[str] = set()
    trashed = 0

    def lines() -> Iterator[str]:
        nonlocal trashed
        yield _dumps(header)
        for d in snap.memories():
            d["tags"] = json.loads(d["tags"])
            d["pinned"] = bool(d["pinned"])
            d["embedding"] = base64.b64encode(d["embedding"]).decode("ascii")
            ids.add(d["id"])
            spaces.add(d["space"])
            trashed += d["state"] == "trashed"
            counts["memories"] += 1
            yield _dumps({"type": "memory", **d})
        for src, dst, kind, at in snap.links():
            if src in ids or dst in ids:
                counts["links"] += 1
                yield _dumps({"type": "link", "src": src, "dst": dst, "kind": kind, "at": at})
        for at, mid, action, detail in snap.audit():
            if mid in ids:
                counts["audit"] += 1
                yield _dumps({"type": "audit", "at": at, "memory_id": mid, "action": action, "detail": json.loads(detail)})
        for sp, source, hsh, applied_at in snap.sources():
            counts["sources"] += 1
            yield _dumps({"type": "source", "space": sp, "source": source, "hash": hsh, "applied_at": applied_at})
        yield _dumps({"type": "end", **counts})

    if isinstance(dest, Path):
        _atomic_write(dest, lines())
        shown = str(dest)
    else:
        for chunk in lines():
            dest.write(chunk)
        dest.flush()
        shown = "-"
    return ExportResult(
        path=shown,
        memories=counts["memories"],
        trashed=trashed,
        links=counts["links"],
        audit=counts["audit"],
        sources=counts["sources"],
        spaces=tuple(sorted(spaces)),
        embed_model=model,
    )


def _atomic_write(dest: Path, chunks: Iterator[str]) -> None:
    """Owner-only (it holds every memory), and all or nothing: a failed export leaves no half file."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileNotFoundError:
        raise not_found(f"cannot write {dest}: its directory does not exist", hint="Create it first.") from None
    except OSError as e:
        raise usage_error(f"cannot write {dest}: {e.strerror or e}", hint="Choose a file you can write.") from None
    try:
        with open(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise store_error(f"cannot write {dest}: {e.strerror}", hint="Free some disk space, or write elsewhere.") from None
        raise usage_error(f"cannot write {dest}: {e.strerror or e}", hint="Choose a file you can write.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_markdown(snap: Snapshot, root: Path) -> int:
    """DIR/SPACE/KIND.md (and DIR/SPACE/trash.md), oldest first: for reading, not for importing."""
    try:
        ensure_private_dir(root)
    except OSError as e:
        raise usage_error(f"cannot use {root} for the Markdown export: {e.strerror or e}") from None
    by_file: dict[Path, list[str]] = {}
    for sp, kind, in_trash in snap.groups():
        path = root / sp / ("trash.md" if in_trash else f"{kind}.md")
        out = by_file.setdefault(path, [])
        for mid, text, k, source, pos, when, tags, pinned, valid_until, retired_at, successor in snap.readable(sp, kind, in_trash):
            info = [k, mid, f"source {source}" + (f" #{pos + 1}" if pos is not None else "")]
            if json.loads(tags):
                info.append("tags " + ", ".join(json.loads(tags)))
            if pinned:
                info.append("pinned")
            if valid_until is not None:
                info.append(f"true until {_day(valid_until)}")
            if retired_at is not None:
                info.append(f"retired {_day(retired_at)}" + (f" for {successor}" if successor else ""))
            out.append(f"## {_day(when, minutes=True)}\n\n_{' · '.join(info)}_\n\n{text.strip()}\n")
    for path, entries in by_file.items():
        ensure_private_dir(path.parent)
        title = f"# {path.parent.name}: {path.stem}\n\n"
        _atomic_write(path, iter([title, "\n".join(entries)]))
    return len(by_file)


def _day(epoch: float, minutes: bool = False) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC" if minutes else "%Y-%m-%d")


# -- import ----------------------------------------------------------------------------------------
@dataclass
class _Parsed:
    """What the checking pass keeps: everything but the memories themselves (they are re-read in
    batches by the writing pass, so a large export is never held in memory)."""

    header: dict[str, Any]
    links: list[tuple[str, str, str, float]] = field(default_factory=list)
    # id -> [(position in the file, at, action, detail)]: entries are written back in file order
    audit: dict[str, list[tuple[int, float, str, str]]] = field(default_factory=dict)
    sources: list[tuple[str, str, str, float]] = field(default_factory=list)


def import_(ctx: Context, source: Path | bytes, *, name: str | None = None) -> ImportResult:
    """Import an export (a file, or its bytes, e.g. stdin). ``name`` is how messages call it."""
    shown = name or (str(source) if isinstance(source, Path) else "stdin")
    parsed = _check_all(_lines(source, shown), shown)
    emb = ctx.embedder  # the store's model check applies: a store of another model refuses
    store = ctx.store
    cat = store.catalog
    added: list[str] = []
    skipped: list[str] = []
    reembedded = 0
    audit_rows = 0
    now = time.time()
    with store.write_lock():
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            nonlocal reembedded, audit_rows
            present = set(cat.by_ids([m["id"] for m in batch]))
            fresh = [m for m in batch if m["id"] not in present]
            skipped.extend(m["id"] for m in batch if m["id"] in present)
            batch.clear()
            if not fresh:
                return
            stale = [m for m in fresh if m["embed_model"] != emb.model_id or len(m["embedding"]) != emb.dim * 4]
            if stale:
                vectors = emb.embed_documents([embed_input(m["text"], m["keys"]) for m in stale])
                for m, v in zip(stale, vectors):
                    m["embedding"], m["embed_model"] = vec_to_blob(v), emb.model_id
                reembedded += len(stale)
            ids = [m["id"] for m in fresh]
            audit = [
                (at, mid, action, detail)
                for _, mid, at, action, detail in sorted((e[0], mid, *e[1:]) for mid in ids for e in parsed.audit.get(mid, ()))
            ]
            rows.insert_memories(store, fresh, audit, {"format": FORMAT, "version": VERSION}, now)
            audit_rows += len(audit)
            added.extend(ids)

        for _, obj in _lines(source, shown):
            if obj.get("type") == "memory":
                batch.append(_memory(obj))
                if len(batch) >= BATCH:
                    flush()
        flush()
        links_written = rows.insert_links(store, parsed.links)
        sources_added = rows.insert_sources(store, parsed.sources)
    spaces = sorted(rows.spaces_of(store, added))
    return ImportResult(
        source=shown,
        added=tuple(added),
        skipped=tuple(skipped),
        reembedded=reembedded,
        links=links_written,
        dangling_links=len(parsed.links) - links_written,
        audit=audit_rows,
        sources=int(sources_added),
        spaces=tuple(spaces),
    )


def _lines(source: Path | bytes, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object is an error."""
    try:
        if isinstance(source, Path):
            f: IO[str] = open(source, encoding="utf-8")  # noqa: SIM115 - closed below
        else:
            import io

            f = io.StringIO(source.decode("utf-8"))
    except FileNotFoundError:
        raise not_found(f"no such file: {shown}", hint="Give the path of a file written by `memcli export`.") from None
    except IsADirectoryError:
        raise usage_error(f"{shown} is a directory", hint="Give the path of a file written by `memcli export`.") from None
    except UnicodeDecodeError:
        raise _bad(shown, 0, "not UTF-8 text") from None
    except OSError as e:
        raise usage_error(f"cannot read {shown}: {e.strerror or e}") from None
    with f:
        n = 0
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise _bad(shown, n, f"not JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(obj, dict):
                    raise _bad(shown, n, "not a JSON object")
                yield n, obj
        except UnicodeDecodeError:
            raise _bad(shown, 0, f"not UTF-8 text (after line {n})") from None


def _bad(shown: str, line: int, problem: str) -> Exception:
    where = f"{shown} line {line}" if line else shown
    return usage_error(
        f"{where}: {problem}; nothing was imported",
        hint="Import only files written by `memcli export` (format memcli-export, version 1); export again if it was edited or cut short.",
    )


def _check_all(lines: Iterator[tuple[int, dict[str, Any]]], shown: str) -> _Parsed:
    first = next(lines, None)
    if first is None:
        raise _bad(shown, 0, "the file is empty")
    n, header = first
    if header.get("format") != FORMAT:
        raise _bad(shown, n, f'not a memcli export (its first line has no "format": "{FORMAT}")')
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(shown, n, f"bad format version {version!r}")
    if version > VERSION:
        raise usage_error(
            f"{shown} is export format version {version}; this memcli reads version {VERSION}",
            hint="Upgrade memcli to import it; nothing was imported.",
        )
    parsed = _Parsed(header)
    counts = {"memories": 0, "links": 0, "audit": 0, "sources": 0}
    seen: set[str] = set()
    end: dict[str, Any] | None = None
    for n, obj in lines:
        kind = obj.get("type")
        if end is not None:
            raise _bad(shown, n, "a line after the end line")
        try:
            if kind == "memory":
                mid = _memory(obj)["id"]
                if mid in seen:
                    raise ValueError(f"memory {mid} appears twice")
                seen.add(mid)
                counts["memories"] += 1
            elif kind == "link":
                src, dst = _id(obj, "src"), _id(obj, "dst")
                parsed.links.append((src, dst, _str(obj, "kind"), _num(obj, "at")))
                counts["links"] += 1
            elif kind == "audit":
                detail = obj.get("detail")
                if not isinstance(detail, dict):
                    raise ValueError("'detail' must be an object")
                entry = (counts["audit"], _num(obj, "at"), _str(obj, "action"), json.dumps(detail, ensure_ascii=False))
                parsed.audit.setdefault(_id(obj, "memory_id"), []).append(entry)
                counts["audit"] += 1
            elif kind == "source":
                row = (check_space(_str(obj, "space")), _str(obj, "source"), _str(obj, "hash"), _num(obj, "applied_at"))
                parsed.sources.append(row)
                counts["sources"] += 1
            elif kind == "end":
                end = obj
            else:
                raise ValueError(f"unknown line type {kind!r}")
        except (ValueError, TypeError, KeyError) as e:
            raise _bad(shown, n, str(e)) from None
        except Exception as e:  # check_space's MemcliFailure: say where
            raise _bad(shown, n, getattr(e, "message", str(e))) from None
    if end is None:
        raise _bad(shown, 0, "no end line: the file was cut short")
    for key, v in counts.items():
        if end.get(key) != v:
            raise _bad(shown, 0, f"the end line counts {end.get(key)!r} {key}, the file holds {v}: it was cut short or edited")
    missing = set(parsed.audit) - seen
    if missing:
        raise _bad(shown, 0, f"audit entries for {len(missing)} memories the file does not hold")
    return parsed


# -- field checks (ValueError names the field) ----------------------------------------------------------
def _str(obj: dict[str, Any], key: str, *, optional: bool = False) -> str:
    v = obj.get(key)
    if v is None and optional:
        return v  # type: ignore[return-value]
    if not isinstance(v, str):
        raise ValueError(f"'{key}' must be a string, got {v!r}")
    return v


def _id(obj: dict[str, Any], key: str) -> str:
    v = _str(obj, key)
    if not ID_RE.fullmatch(v):
        raise ValueError(f"'{key}' is not a memory id: {v!r}")
    return v


def _num(obj: dict[str, Any], key: str, *, optional: bool = False) -> float:
    v = obj.get(key)
    if v is None and optional:
        return v  # type: ignore[return-value]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"'{key}' must be a number, got {v!r}")
    return v


def _int(obj: dict[str, Any], key: str, *, optional: bool = False) -> int:
    v = obj.get(key)
    if v is None and optional:
        return v  # type: ignore[return-value]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"'{key}' must be a whole number of 0 or more, got {v!r}")
    return v


def _memory(obj: dict[str, Any]) -> dict[str, Any]:
    """A memory line checked field by field, as the values the catalog row takes (embedding as bytes)."""
    m: dict[str, Any] = {"id": _id(obj, "id"), "space": check_space(_str(obj, "space"))}
    m["text"] = _str(obj, "text")
    if not m["text"].strip():
        raise ValueError("'text' is empty")
    m["kind"] = _str(obj, "kind")
    if m["kind"] not in {k.value for k in Kind}:
        raise ValueError(f"'kind' must be one of {', '.join(k.value for k in Kind)}, got {m['kind']!r}")
    for key in ("source", "content_hash", "embed_model", "keys"):
        m[key] = _str(obj, key)
    m["position"] = _int(obj, "position", optional=True)
    for key in TIMES:
        m[key] = _num(obj, key, optional=key != "recorded_at")
    tags = obj.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"'tags' must be a list of strings, got {tags!r}")
    m["tags"] = tags
    if not isinstance(obj.get("pinned"), bool):
        raise ValueError(f"'pinned' must be true or false, got {obj.get('pinned')!r}")
    m["pinned"] = obj["pinned"]
    m["importance"] = float(_num(obj, "importance"))
    m["access_count"] = _int(obj, "access_count")
    m["state"] = _str(obj, "state")
    if m["state"] not in ("active", "trashed"):
        raise ValueError(f"'state' must be active or trashed, got {m['state']!r}")
    successor = obj.get("superseded_by")
    m["superseded_by"] = None if successor is None else _id(obj, "superseded_by")
    try:
        blob = base64.b64decode(_str(obj, "embedding"), validate=True)
    except binascii.Error:
        raise ValueError("'embedding' is not base64") from None
    if not blob or len(blob) % 4:
        raise ValueError("'embedding' is not a float32 vector")
    m["embedding"] = blob
    return m
