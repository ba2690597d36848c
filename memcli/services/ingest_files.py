"""What ingest reads: walking the given paths into sources, and reading one source's bytes.

A file the walk sees but has no reader for (a PDF, an image, a Word file) is counted by type, not
read: the summary names what was left out. Hidden paths, excluded ones and a vault application's
own folders are not counted: they are not the user's notes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from memcli.errors import not_found
from memcli.importers.vault import APP_FOLDERS

MARKDOWN = {".md", ".markdown", ".mdown", ".mkd"}
TEXT = {".txt", ".text"}
JSONL = {".jsonl", ".ndjson"}
ORG = {".org"}
HTML = {".html", ".htm", ".xhtml"}
# JSON is read only when it is a chat export (told by content); any other JSON is counted as ignored.
JSON = {".json"}
FORMATS = ("auto", "markdown", "text", "jsonl", "org", "html", "chat-export")
IGNORE_FILE = ".memcliignore"


@dataclass(frozen=True)
class Source:
    """One unit applied all-or-nothing: a file, or stdin."""

    name: str  # the memories' source prefix
    shown: str  # what the user sees in the summary
    fmt: str  # markdown | text | jsonl | org | html | chat-export | json (a chat export, or ignored)
    path: Path | None  # None for stdin
    data: bytes | None = None  # stdin's bytes
    root: Path | None = None  # the directory it was found under (a vault's notes are named from it)


def file_type(path: Path) -> str:
    """How the summary names a file's type: its extension, lower-cased."""
    return path.suffix.lower() or "(no extension)"


def format_of(path: Path, fmt: str) -> str | None:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    for fmt_name, suffixes in (("markdown", MARKDOWN), ("text", TEXT), ("jsonl", JSONL), ("org", ORG), ("html", HTML)):
        if suffix in suffixes:
            return fmt_name
    return "json" if suffix in JSON else None


def discover(
    roots: Sequence[Path],
    *,
    fmt: str = "auto",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    ignored: Counter[str] | None = None,
) -> Iterator[Source]:
    """Files under ``roots``. Hidden files/directories, ``exclude`` globs and ``.memcliignore``
    patterns (gitignore syntax, per directory tree) are skipped; ``include`` globs narrow the set.
    Files of a type memcli does not read are counted in ``ignored`` by type."""
    import pathspec

    inc = pathspec.GitIgnoreSpec.from_lines(include) if include else None
    for root in roots:
        if not root.exists():
            raise not_found(f"no such file or directory: {root}", hint="Check the path.")
        if root.is_file():
            f = format_of(root, fmt)
            # A file named on the command line is read whatever its name: as text, or as a chat
            # export if its content says it is one.
            yield Source(f"file:{root.resolve()}", str(root), f if f not in (None, "json") else "maybe-export", root)
            continue
        patterns = [*exclude, *(f"/{d}/" for d in APP_FOLDERS)]
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
                f = format_of(p, fmt)
                if f is not None:
                    yield Source(f"file:{p.resolve()}", str(p), f, p, root=root)
                elif ignored is not None:
                    ignored[file_type(p)] += 1


def read(src: Source, max_bytes: int) -> tuple[str | None, str, str]:
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
