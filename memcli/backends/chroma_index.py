"""Vector index on an embedded (on-disk) Chroma store.

Chroma holds ids, vectors and the two fields recall filters on (kind, time) — never memory text, so
purging a memory's text never depends on Chroma compacting its files. One collection per memory space:
recall in a space then needs no metadata filter, which in Chroma costs 10-20x an unfiltered query.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memcli.backends.base import Vector, VectorHit, VectorMeta
from memcli.errors import store_error

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

PREFIX = "memcli-"
OVERFETCH = 4  # unfiltered neighbours fetched per wanted hit for a wide filter


def _owner_only(root: Path) -> None:
    """Chroma creates its files with the process umask: the CLI's is 0077, but a program using the API
    may have 0022. Tighten what Chroma made so "directories 0700, files 0600" holds either way."""
    for dirpath, dirnames, filenames in os.walk(root):
        for names, mode in ((dirnames, 0o700), (filenames, 0o600)):
            for name in names:
                p = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(p)
                    if st.st_mode & 0o077 and not stat.S_ISLNK(st.st_mode):
                        os.chmod(p, mode)


def _where(kinds: Sequence[str], since: float | None, until: float | None) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if kinds:
        clauses.append({"kind": {"$in": list(kinds)}})
    if since is not None:
        clauses.append({"when": {"$gte": since}})
    if until is not None:
        clauses.append({"when": {"$lt": until}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _passes(meta: Any, kinds: Sequence[str], since: float | None, until: float | None) -> bool:
    """The same test as ``_where``, on one vector's metadata."""
    if not meta:
        return False
    when = meta.get("when")
    if kinds and meta.get("kind") not in kinds:
        return False
    if since is not None and (when is None or when < since):
        return False
    return until is None or (when is not None and when < until)


class ChromaIndex:
    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: the client is not an embedded one (ServerIndex)
        self._client: ClientAPI | None = None
        self._cols: dict[str, Collection] = {}

    @property
    def client(self) -> ClientAPI:
        if self._client is None:
            self._client = self._open()
        return self._client

    def _open(self) -> ClientAPI:
        assert self.path is not None
        # Belt and braces: Chroma's telemetry is on by default; the setting below turns it off
        # and the variable covers any component that reads the environment instead.
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        try:
            import chromadb
            from chromadb.config import Settings
        except ImportError as e:  # pragma: no cover - broken install
            raise store_error(f"chromadb is not installed: {e}", hint="Run ./scripts/setup again.")
        try:
            client = chromadb.PersistentClient(
                path=str(self.path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
            )
        except Exception as e:
            raise store_error(
                f"cannot open the vector store at {self.path}: {e}",
                hint="Check the directory's permissions; `memcli doctor --repair` rebuilds it from the catalog.",
            )
        _owner_only(self.path)
        return client

    def _col(self, space: str, create: bool = True) -> Collection | None:
        col = self._cols.get(space)
        if col is None:
            name = PREFIX + space
            if create:
                col = self.client.get_or_create_collection(name, metadata={"hnsw:space": "cosine"}, embedding_function=None)
            else:
                try:
                    col = self.client.get_collection(name, embedding_function=None)
                except Exception:  # Chroma raises several types for "does not exist"
                    return None
            self._cols[space] = col
        return col

    def upsert(self, space: str, ids: Sequence[str], vectors: Sequence[Vector], metas: Sequence[VectorMeta]) -> None:
        if not ids:
            return
        col = self._col(space)
        assert col is not None
        step = 4000  # below Chroma's max batch size
        for i in range(0, len(ids), step):
            col.upsert(
                ids=list(ids[i : i + step]),
                embeddings=[list(v) for v in vectors[i : i + step]],  # type: ignore[arg-type]
                metadatas=[{"kind": m.kind, "when": m.when} for m in metas[i : i + step]],
            )
        if self.path is not None:
            _owner_only(self.path)  # a new collection's segment files appear on its first write

    def delete(self, space: str, ids: Sequence[str]) -> None:
        col = self._col(space, create=False)
        if col is None or not ids:
            return
        for i in range(0, len(ids), 4000):
            col.delete(ids=list(ids[i : i + 4000]))

    def query(
        self,
        space: str,
        vector: Vector,
        n: int,
        *,
        kinds: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        ids: Sequence[str] | None = None,
        overfetch_only: bool = False,
    ) -> list[VectorHit]:
        col = self._col(space, create=False)
        if col is None or n <= 0 or (ids is not None and not ids):
            return []
        # No count() first: it cost more than the query itself at 100k (6.7 vs 2.5 ms), and Chroma
        # returns what exists when n_results exceeds it.
        where = None if ids is not None else _where(kinds, since, until)
        if where is not None:
            # A filter the catalog could not turn into a short id list passes many memories. Chroma's
            # own metadata filter then scans its metadata (0.2-1 s at 100k, 4.7 s at 1M); fetching
            # OVERFETCH x n neighbours unfiltered and keeping those that pass costs 27 ms at 1M
            # (benchmarks/RESULTS.md, "Scale"). Too few pass: the caller may try an id list first.
            want = n * OVERFETCH
            res = col.query(query_embeddings=[list(vector)], n_results=want, include=["distances", "metadatas"])  # type: ignore[arg-type]
            found = res["ids"][0] if res["ids"] else []
            dists = (res.get("distances") or [[]])[0]
            metas = (res.get("metadatas") or [[]])[0]
            hits = [VectorHit(i, 1.0 - float(d)) for i, d, m in zip(found, dists, metas) if _passes(m, kinds, since, until)]
            if len(hits) >= n or len(found) < want or overfetch_only:
                return hits[:n]
        res = col.query(
            query_embeddings=[list(vector)],  # type: ignore[arg-type]
            n_results=n,
            ids=list(ids) if ids is not None else None,
            where=where,
            include=["distances"],
        )
        found = res["ids"][0] if res["ids"] else []
        dists = (res.get("distances") or [[]])[0]
        return [VectorHit(i, 1.0 - float(d)) for i, d in zip(found, dists)]

    def count(self, space: str) -> int:
        col = self._col(space, create=False)
        return 0 if col is None else col.count()

    def ids(self, space: str) -> set[str]:
        col = self._col(space, create=False)
        if col is None:
            return set()
        return set(col.get(include=[])["ids"])

    def drop_space(self, space: str) -> None:
        if self._col(space, create=False) is not None:
            self.client.delete_collection(PREFIX + space)
        self._cols.pop(space, None)

    def disk_bytes(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
