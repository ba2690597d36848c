"""memcli's Python API: what the CLI, the benchmarks and other programs call.

    from memcli.api import Memcli

    mem = Memcli()                       # the user's store; Memcli(home="/tmp/x") for a separate one
    mem.add("Pickle's vet said: ten days of rest", tags=["dog"])
    for hit in mem.recall("what did the vet say?").hits:
        print(hit.rank, hit.memory.text)

Every method returns a typed, frozen record (``memcli.records``) and raises ``MemcliFailure`` (with a
hint) for expected failures. Nothing here prints.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from memcli.context import Context
from memcli.paths import Paths
from memcli.records import AddResult, ForgetResult, Kind, Memory, Page, RecallResult, Stats

if TYPE_CHECKING:
    from memcli.services.doctor import DoctorReport
    from memcli.services.ingest import IngestReport
    from memcli.services.reindex import ReindexResult


class Memcli:
    def __init__(
        self,
        home: str | Path | None = None,
        *,
        space: str | None = None,
        settings: dict[tuple[str, str], object] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Open memcli's state: ``home`` works like ``MEMCLI_HOME``; ``settings`` overrides config
        keys as {(section, key): value}, like command-line flags do."""
        import os

        env = dict(os.environ) if env is None else dict(env)
        if home is not None:
            env["MEMCLI_HOME"] = str(home)
        overrides = dict(settings or {})
        if space is not None:
            overrides[("store", "space")] = space
        self.ctx = Context(Paths.resolve(env), env=env, overrides=overrides)

    @property
    def notices(self) -> list[str]:
        """Things worth telling the user (a model converted, interrupted writes completed)."""
        return self.ctx.notices

    def add(
        self,
        text: str,
        *,
        kind: Kind = Kind.NOTE,
        tags: Sequence[str] = (),
        pinned: bool = False,
        when: datetime | None = None,
        space: str | None = None,
        source: str = "api",
    ) -> AddResult:
        from memcli.services import memories as _memories

        return _memories.add(self.ctx, text, kind=kind, tags=tags, pinned=pinned, when=when, space=space, source=source)

    def recall(
        self,
        query: str,
        *,
        k: int | None = None,
        kinds: Sequence[Kind] = (),
        tags: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        now: datetime | None = None,
        space: str | None = None,
        context: int = 0,
        time_aware: bool = True,
        touch: bool = True,
    ) -> RecallResult:
        """Hybrid recall. ``now`` is the reference time for relative expressions and recency;
        ``context`` adds that many neighbours (same document/conversation) to each hit;
        ``time_aware`` reads time expressions in the query; ``touch`` counts the recall."""
        from memcli.services import recall as _recall

        return _recall.recall(
            self.ctx,
            query,
            k=k,
            kinds=kinds,
            tags=tags,
            since=since,
            until=until,
            now=now,
            space=space,
            context=context,
            time_aware=time_aware,
            touch=touch,
        )

    def show(self, ref: str) -> Memory:
        from memcli.services import memories as _memories

        return _memories.show(self.ctx, ref)

    def list(
        self,
        *,
        kinds: Sequence[Kind] = (),
        tags: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        trash: bool = False,
        limit: int = 20,
        offset: int = 0,
        space: str | None = None,
    ) -> Page:
        from memcli.services import memories as _memories

        return _memories.list_memories(
            self.ctx, space=space, kinds=kinds, tags=tags, since=since, until=until, trash=trash, limit=limit, offset=offset
        )

    def forget(
        self,
        refs: Sequence[str] = (),
        *,
        query: str | None = None,
        k: int = 5,
        purge: bool = False,
        dry_run: bool = False,
        space: str | None = None,
    ) -> ForgetResult:
        from memcli.services import memories as _memories

        return _memories.forget(self.ctx, refs, query=query, k=k, space=space, purge=purge, dry_run=dry_run)

    def restore(self, refs: Sequence[str]) -> builtins.list[Memory]:
        from memcli.services import memories as _memories

        return _memories.restore(self.ctx, refs)

    def stats(self, *, space: str | None = None) -> Stats:
        from memcli.services import memories as _memories

        return _memories.stats(self.ctx, space)

    def ingest(
        self,
        paths: Sequence[str | Path],
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
        """Ingest files/directories (Markdown, text, JSONL) and optionally ``stdin`` bytes.
        ``progress(files_done, files_total, chunks_added)`` is called between files."""
        from memcli.services import ingest as _ingest

        return _ingest.ingest(
            self.ctx,
            [Path(p) for p in paths],
            space=space,
            fmt=fmt,
            include=include,
            exclude=exclude,
            stdin=stdin,
            stdin_name=stdin_name,
            prune_missing=prune_missing,
            dry_run=dry_run,
            progress=progress,
        )

    def reindex(self, progress: Callable[[int, int], None] | None = None) -> ReindexResult:
        from memcli.services import reindex as _reindex

        return _reindex.reindex(self.ctx, progress)

    def doctor(self, *, repair: bool = False) -> DoctorReport:
        """Check that catalog, keyword index and vector index agree; ``repair`` rebuilds from the catalog."""
        from memcli.services import doctor as _doctor

        return _doctor.doctor(self.ctx, repair=repair)

    def close(self) -> None:
        self.ctx.close()
