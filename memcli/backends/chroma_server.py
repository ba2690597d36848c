"""A Chroma server (``chroma run``, or any Chroma deployment) as memcli's store: connection, errors, and
the shared change log.

What lives on the server (see ``memcli/store/replica.py`` for why):

- one collection per memory space, ``memcli-SPACE``: ids, vectors and the kind/time recall filters on
  (exactly what the embedded index holds);
- the change log: every change memcli made to its catalog, one record per committed transaction (split
  in parts when large, the parts always in one segment), in segment collections ``memcli.changelog.START``
  (plus ``memcli.changelog``, the oldest, on stores written before segments). Chroma needs a vector for
  each record; the log has no use for one, so every record carries the constant ``[1.0]``.

Every call goes through :func:`guard`, which turns a refused connection, a timeout, an auth refusal or
a missing tenant/database into a :class:`MemcliFailure` naming the URL and what to check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from memcli.backends.chroma_index import ChromaIndex
from memcli.errors import ExitCode, MemcliFailure, config_error

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

LOG_COLLECTION = "memcli.changelog"  # a dot: no space name ("memcli-" + space) can collide with it
# Segments of the log: LOG_COLLECTION + "." + start (13-digit ms); LOG_COLLECTION itself is the oldest
# segment of stores written before segments. On `chroma run` 1.5.9 an add costs more the more bytes of
# large (bulk, 256 KB) records the collection holds: a 2 KB add took 7 / 33 / 49 / 38 / 90 / 163 ms at
# 0 / 2 / 4 / 8 / 16 / 32 MB vs 8-37 ms to a small one (2 KB records alone: no growth up to 64 MB).
# Every append and command start lists the collections, ~0.17 ms per collection: 8 MB keeps both small
# (benchmarks/RESULTS.md, "Server change log segments"). MEMCLI_LOG_SEGMENT_BYTES overrides it.
SEGMENT_BYTES = int(os.environ.get("MEMCLI_LOG_SEGMENT_BYTES") or 8_000_000)
# A transaction this large (bulk ingest/import: 256 KB records) gets a segment of its own, sealed at once:
# the single adds after it then append to a segment of small records, which does not slow down.
BULK_BYTES = 1_000_000
RECORD_OVERHEAD = 200  # bytes counted per record besides its body (id, metadata)
LIST_PAGE = 1000  # collections per list_collections request
EMBEDDINGS_PREFIX = "memcli.embeddings."  # + dimension: every memory's embedding, kept until it is purged
PAGE = 2000  # records per request when reading the log
T = TypeVar("T")


@dataclass(frozen=True)
class ServerConfig:
    url: str
    tenant: str
    database: str
    token: str | None = field(repr=False)  # never in a repr, a log or a traceback
    token_header: str
    timeout_s: float

    @property
    def headers(self) -> dict[str, str]:
        if not self.token:
            return {}
        if self.token_header == "authorization":
            return {"Authorization": f"Bearer {self.token}"}
        return {"X-Chroma-Token": self.token}

    def where(self) -> str:
        """The URL plus tenant/database when they are not Chroma's defaults (for messages)."""
        extra = (
            "" if (self.tenant, self.database) == ("default_tenant", "default_database") else f" ({self.tenant}/{self.database})"
        )
        return self.url + extra


def network_error(cfg: ServerConfig, problem: str, hint: str) -> MemcliFailure:
    return MemcliFailure(f"Chroma server {cfg.where()}: {problem}", hint=hint, code=ExitCode.NETWORK)


def _unreachable(cfg: ServerConfig, timed_out: bool = False) -> MemcliFailure:
    return network_error(
        cfg,
        f"did not answer within {cfg.timeout_s:g} s" if timed_out else "cannot be reached (connection refused or lost)",
        hint="Check that the server is running (`chroma run --path DIR --host 0.0.0.0 --port PORT`), that [store] url "
        "(or --store-url) has the right host and port, and that this machine can reach it. Nothing was changed.",
    )


def _auth_refused(cfg: ServerConfig) -> MemcliFailure:
    return network_error(
        cfg,
        "refused the credentials (HTTP 401/403)" if cfg.token else "requires a token, and none is set",
        hint="Set the token in MEMCLI_STORE_TOKEN or in the file named by [store] token_file, and check [store] "
        "token_header (x-chroma-token or authorization). Nothing was changed.",
    )


def classify(cfg: ServerConfig, e: BaseException) -> MemcliFailure | None:
    """The user-facing failure for an exception raised while talking to the server, or None (a bug)."""
    import httpx

    if isinstance(e, MemcliFailure):
        return e
    if isinstance(e, httpx.TimeoutException):
        failure = _unreachable(cfg, timed_out=True)
        failure.hint = failure.hint.replace(
            "Nothing was changed.", "A change sent just before may still have reached it: the next command shows."
        )
        return failure
    if isinstance(e, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.NetworkError)):
        return _unreachable(cfg)
    text = str(e)
    if isinstance(e, ValueError) and "Could not connect to a Chroma server" in text:
        return _unreachable(cfg)
    low = text.lower()
    name = type(e).__name__
    if name in ("AuthorizationError", "AuthenticationError") or "unauthorized" in low or "forbidden" in low:
        return _auth_refused(cfg)
    if name == "NotFoundError" and ("tenant" in low or "database" in low):
        return network_error(
            cfg,
            f"tenant {cfg.tenant!r} / database {cfg.database!r} does not exist ({text})",
            hint="Create it on the server (chromadb.AdminClient().create_database), or fix [store] tenant and "
            "[store] database. Nothing was changed.",
        )
    if isinstance(e, httpx.HTTPError) or (name.endswith("Error") and type(e).__module__.startswith("chromadb")):
        return network_error(cfg, f"the request failed: {text}", hint="Check the server's log; nothing was changed here.")
    return None


@contextmanager
def guard(cfg: ServerConfig) -> Iterator[None]:
    try:
        yield
    except MemcliFailure:
        raise
    except Exception as e:
        failure = classify(cfg, e)
        if failure is None:
            raise
        raise failure from None


def parse_url(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise config_error(
            f"[store] url {url!r} is not an http(s) URL",
            hint='Write it as "http://HOST:PORT" (for example "http://192.168.1.10:8000").',
        )
    if parts.path not in ("", "/"):
        raise config_error(f"[store] url {url!r} has a path", hint='Give only "http://HOST:PORT".')
    ssl = parts.scheme == "https"
    return parts.hostname, parts.port or (443 if ssl else 8000), ssl


def preflight(cfg: ServerConfig) -> None:
    """Ask the server who it is before chromadb's client does (it has no timeouts): answers within
    ``timeout_s`` or a clear error, auth and API version checked."""
    import httpx

    host, port, ssl = parse_url(cfg.url)
    base = f"{'https' if ssl else 'http'}://{host}:{port}/api/v2"
    with guard(cfg), httpx.Client(timeout=cfg.timeout_s, headers=cfg.headers, trust_env=False) as http:
        r = http.get(base + "/heartbeat")
        if r.status_code in (401, 403):
            raise _auth_refused(cfg)
        if r.status_code == 404:
            raise network_error(
                cfg,
                "does not speak Chroma's v2 API (HTTP 404 on /api/v2/heartbeat)",
                hint="memcli needs a Chroma server of version 1.0 or newer (`pip install -U chromadb`, then `chroma run`), "
                "or [store] url points at something that is not a Chroma server.",
            )
        if r.status_code != 200:
            raise network_error(cfg, f"answered HTTP {r.status_code} to a heartbeat", hint="Check the server's log.")
        r = http.get(base + "/version")
        version = r.json() if r.status_code == 200 else ""
        if not isinstance(version, str) or not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 1:
            raise network_error(
                cfg,
                f"reports version {version!r}; memcli needs a Chroma server 1.0 or newer",
                hint="Upgrade the server (`pip install -U chromadb`, then restart `chroma run`).",
            )
        r = http.get(base + "/auth/identity")
        if r.status_code in (401, 403):
            raise _auth_refused(cfg)


def connect(cfg: ServerConfig) -> ClientAPI:
    preflight(cfg)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import chromadb
    import httpx
    from chromadb.config import Settings

    host, port, ssl = parse_url(cfg.url)
    with guard(cfg):
        client = chromadb.HttpClient(
            host=host,
            port=port,
            ssl=ssl,
            headers=cfg.headers or None,
            tenant=cfg.tenant,
            database=cfg.database,
            settings=Settings(anonymized_telemetry=False),
        )
    # chromadb's HTTP session waits forever; a server that stops answering must fail in seconds.
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(cfg.timeout_s, read=max(cfg.timeout_s, 30.0))
    return client


class ServerIndex(ChromaIndex):
    """The vector index on a Chroma server: the embedded index's logic over an HttpClient, every call
    guarded so a lost server is a clear failure rather than an internal error."""

    def __init__(self, cfg: ServerConfig, client_factory: Callable[[], ClientAPI]) -> None:
        super().__init__(path=None)
        self.cfg = cfg
        self._factory = client_factory

    def _open(self) -> ClientAPI:
        return self._factory()

    def _guarded(self, fn: Callable[[], T]) -> T:
        with guard(self.cfg):
            return fn()

    def upsert(self, *a: Any, **kw: Any) -> None:
        self._guarded(lambda: ChromaIndex.upsert(self, *a, **kw))

    def delete(self, *a: Any, **kw: Any) -> None:
        self._guarded(lambda: ChromaIndex.delete(self, *a, **kw))

    def query(self, *a: Any, **kw: Any) -> Any:
        return self._guarded(lambda: ChromaIndex.query(self, *a, **kw))

    def count(self, space: str) -> int:
        return self._guarded(lambda: ChromaIndex.count(self, space))

    def ids(self, space: str) -> set[str]:
        return self._guarded(lambda: ChromaIndex.ids(self, space))

    def drop_space(self, space: str) -> None:
        self._guarded(lambda: ChromaIndex.drop_space(self, space))

    def disk_bytes(self) -> int:
        return 0  # on the server


@dataclass(frozen=True)
class LogRecord:
    id: str
    tx: str
    part: int
    parts: int
    at_ms: int
    body: str  # JSON: {"stmts": [[sql, params or [params...], many], ...]}
    schema: int = 0  # the catalog schema of the memcli that wrote it
    segment: str = ""  # the log segment (collection) it was read from; "" before it is appended


@dataclass(frozen=True)
class Segment:
    """One collection of the change log. ``held``: the bytes its writers say they appended (None for the
    legacy collection, written before segments: treated as full, so appends go to a new segment)."""

    name: str
    start_ms: int
    held: int | None


def segment_start(name: str) -> int | None:
    """A segment's start (the creating writer's clock, ms) from its name; None: not a log segment."""
    if name == LOG_COLLECTION:
        return 0
    suffix = name.removeprefix(LOG_COLLECTION + ".")
    return int(suffix) if suffix != name and len(suffix) == 13 and suffix.isdigit() else None


def _held(col: Collection) -> int | None:
    """The bytes a segment's writers recorded in its metadata (None: the legacy collection has none)."""
    held = (col.metadata or {}).get("bytes")
    return int(held) if isinstance(held, int) else None


def segment_name(start_ms: int) -> str:
    return f"{LOG_COLLECTION}.{start_ms:013d}"


class ChangeLog:
    """The server's append-only log of catalog transactions (see ``memcli/store/replica.py``), split into
    segments: Chroma's server makes every write to a collection slower as the collection grows, so
    appends go to the newest segment and a new one is started once it holds SEGMENT_BYTES."""

    def __init__(self, cfg: ServerConfig, client: ClientAPI) -> None:
        self.cfg = cfg
        self._client = client
        self._cols: dict[str, Collection] = {}

    def segments(self) -> list[Segment]:
        """Every segment on the server, oldest first (listed afresh: other machines add segments)."""
        found: list[tuple[Segment, Collection]] = []
        with guard(self.cfg):
            offset = 0
            while True:
                page = self._client.list_collections(limit=LIST_PAGE, offset=offset)
                for col in page:
                    start = segment_start(col.name)
                    if start is not None:
                        found.append((Segment(col.name, start, _held(col)), col))
                if len(page) < LIST_PAGE:
                    break
                offset += LIST_PAGE
        self._cols.update((seg.name, col) for seg, col in found)
        return sorted((seg for seg, _ in found), key=lambda s: (s.start_ms, s.name))

    def _col(self, name: str) -> Collection:
        if name not in self._cols:
            with guard(self.cfg):
                self._cols[name] = self._client.get_collection(name, embedding_function=None)
        return self._cols[name]

    def append(self, records: Sequence[LogRecord]) -> None:
        """Append one transaction's records, all to the same segment (replay needs a transaction whole)."""
        import time

        segs = self.segments()
        newest = segs[-1] if segs else None
        size = sum(len(r.body.encode()) + RECORD_OVERHEAD for r in records)
        # Large records are what slow a collection's writes, small ones do not (see SEGMENT_BYTES): a
        # bulk transaction gets a segment of its own, so single adds never append next to one.
        bulk = size >= BULK_BYTES
        with guard(self.cfg):
            if newest is None or newest.held is None or newest.held >= SEGMENT_BYTES or (bulk and newest.held > 0):
                # Never before the newest start, whatever this clock says: names must sort by age. Two
                # writers rolling over at once may make two segments; both are read, the older is sealed.
                start = max(time.time_ns() // 1_000_000, newest.start_ms + 1 if newest else 0)
                col = self._client.get_or_create_collection(segment_name(start), embedding_function=None, metadata={"bytes": 0})
                self._cols[col.name] = col
                newest = Segment(col.name, start, _held(col) or 0)
            col = self._col(newest.name)
            for i in range(0, len(records), 100):
                part = records[i : i + 100]
                col.add(
                    ids=[r.id for r in part],
                    embeddings=[[1.0] for _ in part],  # type: ignore[arg-type]
                    documents=[r.body for r in part],
                    metadatas=[{"tx": r.tx, "part": r.part, "parts": r.parts, "at": r.at_ms, "schema": r.schema} for r in part],
                )
            # modify() replaces the whole metadata. Two writers appending at once may each write their own
            # sum, losing the other's bytes: the count is approximate, which is fine, as it only decides
            # when to start the next segment.
            held = (newest.held or 0) + size
            col.modify(metadata={"bytes": max(held, SEGMENT_BYTES) if bulk else held})  # a bulk segment is sealed

    def counts(self, names: Sequence[str]) -> dict[str, int]:
        """Records held by each named segment (one request each)."""
        with guard(self.cfg):
            return {name: self._col(name).count() for name in names}

    def count(self) -> int:
        """Records in the whole log (every segment counted: exact, one request per segment)."""
        return sum(self.counts([s.name for s in self.segments()]).values())

    # -- embeddings: kept out of the log's JSON (base64 there cost ~4x the server's disk) ------------
    def _emb_col(self, dim: int, create: bool) -> Collection | None:
        name = f"{EMBEDDINGS_PREFIX}{dim}"
        with guard(self.cfg):
            if create:
                return self._client.get_or_create_collection(name, embedding_function=None)
            try:
                return self._client.get_collection(name, embedding_function=None)
            except Exception as e:  # guard() turns anything but "no such collection" into a clear failure
                if "does not exist" not in str(e).lower():
                    raise
                return None

    def put_embeddings(self, dim: int, ids: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
        col = self._emb_col(dim, create=True)
        assert col is not None
        with guard(self.cfg):
            for i in range(0, len(ids), 1000):
                col.upsert(ids=list(ids[i : i + 1000]), embeddings=[list(v) for v in vectors[i : i + 1000]])  # type: ignore[arg-type]

    def get_embeddings(self, dim: int, ids: Sequence[str]) -> dict[str, Any]:
        """{id: float32 numpy vector} of those found."""
        col = self._emb_col(dim, create=False)
        out: dict[str, Any] = {}
        if col is None:
            return out
        with guard(self.cfg):
            for i in range(0, len(ids), 1000):
                res = col.get(ids=list(ids[i : i + 1000]), include=["embeddings"])
                for rid, v in zip(res["ids"], res["embeddings"] if res["embeddings"] is not None else []):
                    out[rid] = v
        return out

    def delete_embeddings(self, ids: Sequence[str]) -> None:
        with guard(self.cfg):
            for c in self._client.list_collections():
                if c.name.startswith(EMBEDDINGS_PREFIX):
                    self._client.get_collection(c.name, embedding_function=None).delete(ids=list(ids))

    def _records(self, segment: str, res: Any) -> list[LogRecord]:
        out = []
        docs = res["documents"] or [""] * len(res["ids"])
        for rid, doc, meta in zip(res["ids"], docs, res["metadatas"] or []):
            out.append(
                LogRecord(
                    rid,
                    str(meta["tx"]),
                    int(meta["part"]),
                    int(meta["parts"]),
                    int(meta["at"]),
                    doc or "",
                    int(meta.get("schema", 0)),
                    segment,
                )
            )
        return out

    def _pages(self, segment: str, page: int, **get: Any) -> Iterator[Any]:
        """``collection.get(**get)`` of one segment, page by page."""
        col = self._col(segment)
        offset = 0
        while True:
            res = col.get(**get, limit=page, offset=offset)
            yield res
            if len(res["ids"]) < page:
                return
            offset += page

    def since(self, at_ms: int, *, bodies: bool = True, segments: Sequence[Segment] | None = None) -> list[LogRecord]:
        """Records stamped at or after ``at_ms``; ``bodies=False``: ids and metadata only (cheap).

        Reads the newest segment that started at or before ``at_ms`` and every newer one: an older
        segment was sealed before that one started, so its records are older (but for a writer racing
        a rollover by a few milliseconds or a clock that is off; the caller re-reads a window for
        those, and its count check finds anything else)."""
        segs = list(self.segments() if segments is None else segments)
        first = max((i for i, s in enumerate(segs) if s.start_ms <= at_ms), default=0)
        out: list[LogRecord] = []
        include: Any = ["documents", "metadatas"] if bodies else ["metadatas"]
        with guard(self.cfg):
            for seg in segs[first:]:
                for res in self._pages(seg.name, PAGE, where={"at": {"$gte": at_ms}}, include=include):
                    out += self._records(seg.name, res)
        return out

    def all_ids(self, segments: Sequence[Segment] | None = None) -> dict[str, str]:
        """{record id: its segment} for the whole log."""
        out: dict[str, str] = {}
        with guard(self.cfg):
            for seg in self.segments() if segments is None else segments:
                for res in self._pages(seg.name, PAGE * 5, include=[]):
                    out.update((rid, seg.name) for rid in res["ids"])
        return out

    def by_ids(self, where: Mapping[str, str]) -> list[LogRecord]:
        """The records named by {record id: its segment} (as all_ids or since found them)."""
        by_seg: dict[str, list[str]] = {}
        for rid, seg in where.items():
            by_seg.setdefault(seg, []).append(rid)
        out: list[LogRecord] = []
        with guard(self.cfg):
            for seg, ids in by_seg.items():
                for i in range(0, len(ids), PAGE):
                    res = self._col(seg).get(ids=ids[i : i + PAGE], include=["documents", "metadatas"])
                    out += self._records(seg, res)
        return out

    def containing(self, needle: str) -> list[LogRecord]:
        """Records whose JSON body contains ``needle`` (as JSON escapes it), in every segment."""
        fragment = json.dumps(needle, ensure_ascii=False)[1:-1]
        out: list[LogRecord] = []
        with guard(self.cfg):
            for seg in self.segments():
                for res in self._pages(
                    seg.name, PAGE, where_document={"$contains": fragment}, include=["documents", "metadatas"]
                ):
                    out += self._records(seg.name, res)
        return out

    def rewrite(self, records: Sequence[LogRecord]) -> None:
        """Replace the bodies of records read from the log (each goes back to the segment it came from)."""
        by_seg: dict[str, list[LogRecord]] = {}
        for r in records:
            if not r.segment:
                raise ValueError(f"log record {r.id} was not read from a segment")
            by_seg.setdefault(r.segment, []).append(r)
        with guard(self.cfg):
            for seg, recs in by_seg.items():
                for i in range(0, len(recs), 100):
                    part = recs[i : i + 100]
                    # With documents and no embeddings chromadb would fetch its default embedding model.
                    self._col(seg).update(
                        ids=[r.id for r in part],
                        embeddings=[[1.0] for _ in part],  # type: ignore[arg-type]
                        documents=[r.body for r in part],
                    )
