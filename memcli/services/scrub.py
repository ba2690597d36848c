"""After a purge: take the purged text out of memcli's own files outside the store (the chat REPL's
line history, the consolidate log), then search every file memcli writes for it. The search is the
proof a user can read: `forget --purge` says where it looked and that it found nothing.

What is searched for: each purged memory's text as stored, as JSON writes it (escaped), and its
first PREFIX characters (a log quotes memories shortened). A text shorter than MIN_CHARS is not
searched (it would be found by chance), and neither is one that a memory still kept also says (its
presence proves nothing); both are named in the report."""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from memcli.context import Context
from memcli.records import Kind, Memory, PurgeProof

MIN_CHARS = 8
PREFIX = 40
PLACEHOLDER = "[purged]"


def scrub_and_prove(ctx: Context, memories: Sequence[Memory]) -> PurgeProof:
    """Call after ``store.purge(memories)``: scrub the files outside the store, then scan them all."""
    cat = ctx.store.catalog
    needles: dict[str, list[bytes]] = {}
    unchecked: list[str] = []
    for m in memories:
        text = m.text.strip()
        said = [text]
        if m.kind == Kind.EPISODE and ": " in text[:20]:  # a turn is stored as "user: WORDS"; a history has WORDS
            said.append(text.split(": ", 1)[1].strip())
        if len(said[-1]) < MIN_CHARS:
            unchecked.append(f"{m.id[:8]}: shorter than {MIN_CHARS} characters")
        elif any(cat.kept_texts_containing(t[:PREFIX]) for t in said):
            unchecked.append(f"{m.id[:8]}: a memory still kept says the same words")
        else:
            needles[m.id] = [f for t in said for f in _forms(t)]
    scrubbed = ["catalog: rows, keyword index, audit details and links erased; file rewritten (VACUUM), write-ahead log emptied"]
    scrubbed.append("vector index: vectors deleted" + (" (it never holds text)" if not ctx.server_mode else ""))
    if ctx.server_mode:
        scrubbed.append("server change log: records quoting the text rewritten (the server's own files may keep a copy until Chroma compacts them)")
    all_forms = [f for forms in needles.values() for f in forms]
    history = ctx.paths.data_dir / "chat_history"
    if all_forms and _scrub_history(history, all_forms):
        scrubbed.append(f"chat line history: entries quoting the text removed ({history})")
    for log in _files(ctx.paths.log_dir, skip=None):
        if all_forms and _scrub_lines(log, all_forms):
            scrubbed.append(f"log: quotes replaced by {PLACEHOLDER} ({log})")
    files = bytes_ = 0
    found: list[str] = []
    for path in [*_files(ctx.paths.data_dir, skip=ctx.paths.models_dir), *_files(ctx.paths.log_dir, skip=None)]:
        files += 1
        bytes_ += path.stat().st_size
        if all_forms and _contains(path, all_forms):
            found.append(str(path))
    return PurgeProof(tuple(scrubbed), files, bytes_, len(needles), tuple(unchecked), tuple(found))


def _forms(text: str) -> list[bytes]:
    """The byte strings a file could hold the text as: raw UTF-8, JSON-escaped (both ASCII-only and
    not), each whole and as its first PREFIX characters."""
    out: list[bytes] = []
    for t in dict.fromkeys([text, text[:PREFIX]]):
        for form in (t, json.dumps(t)[1:-1], json.dumps(t, ensure_ascii=False)[1:-1]):
            b = form.encode("utf-8")
            if b not in out:
                out.append(b)
    return out


def _files(root: Path, skip: Path | None) -> Iterator[Path]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        for name in filenames:
            p = here / name
            if p.is_file() and not p.is_symlink():
                yield p


def _contains(path: Path, forms: Sequence[bytes]) -> bool:
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return any(data.find(b) != -1 for b in forms)
    except OSError:  # a file that vanished or cannot be read: not ours to judge here
        return False


def _rewrite(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, owner-only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _scrub_history(path: Path, forms: Sequence[bytes]) -> bool:
    """prompt_toolkit's history file: entries of "# time" then "+line" lines, separated by blank
    lines. Entries quoting a purged text are dropped whole."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    entries = data.split(b"\n\n")
    kept = [e for e in entries if not any(b in e for b in forms)]
    if len(kept) == len(entries):
        return False
    _rewrite(path, b"\n\n".join(kept))
    return True


def _scrub_lines(path: Path, forms: Sequence[bytes]) -> bool:
    """A JSON-lines log: every string that quotes a purged text (even shortened) becomes PLACEHOLDER
    whole, so no tail of it stays behind; a line that is not JSON has the quotes replaced."""
    data = path.read_bytes()
    if not any(b in data for b in forms):
        return False
    words = [b.decode("utf-8") for b in forms]
    out = []
    for raw in data.splitlines(keepends=True):
        if not any(b in raw for b in forms):
            out.append(raw)
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            for b in sorted(forms, key=len, reverse=True):
                raw = raw.replace(b, PLACEHOLDER.encode())
            out.append(raw)
            continue
        out.append(json.dumps(_blank(obj, words), ensure_ascii=False).encode("utf-8") + b"\n")
    _rewrite(path, b"".join(out))
    return True


def _blank(obj: object, words: Sequence[str]) -> object:
    if isinstance(obj, str):
        return PLACEHOLDER if any(w in obj for w in words) else obj
    if isinstance(obj, list):
        return [_blank(v, words) for v in obj]
    if isinstance(obj, dict):
        return {k: _blank(v, words) for k, v in obj.items()}
    return obj
