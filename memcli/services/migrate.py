"""`memcli migrate --to URL` / `--from URL`: move the memory store between this machine's embedded store
and a Chroma server, losslessly.

It is an export followed by an import (``memcli/services/transfer.py``): every field, embedding, link,
audit entry and ingested-source record goes across, ids kept, no re-embedding when the model matches;
the import adds one "import" audit entry per memory, so the history says when it moved. The target
must hold no memories (merging two stores is `memcli import`'s job); the source is left as it was.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from memcli.context import Context
from memcli.errors import store_error, usage_error
from memcli.paths import ensure_private_dir


@dataclass(frozen=True)
class MigrateResult:
    source: str  # "embedded" or the URL
    target: str
    memories: int
    links: int
    audit: int
    sources: int
    spaces: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "spaces": list(self.spaces)}


def _open(ctx: Context, url: str) -> Context:
    return Context(ctx.paths, env=ctx.env, overrides={("store", "url"): url})


def migrate(ctx: Context, *, to_url: str | None = None, from_url: str | None = None) -> MigrateResult:
    from memcli.services import transfer

    if (to_url is None) == (from_url is None):
        raise usage_error("give exactly one of --to URL and --from URL", hint="memcli migrate --to http://HOST:8000")
    src = _open(ctx, from_url or "")
    dst = _open(ctx, to_url or "")
    src.on_notice = dst.on_notice = ctx.on_notice
    names = (from_url or "embedded", to_url or "embedded")
    tmp = ensure_private_dir(ctx.paths.data_dir) / f"migrate-{os.getpid()}.jsonl"
    try:
        if dst.store.catalog.count():
            raise store_error(
                f"the target store ({names[1]}) already holds memories",
                hint="migrate moves a store into an empty one; to merge, `memcli export` here and `memcli import` there.",
            )
        exported = transfer.export(src, tmp)
        imported = transfer.import_(dst, tmp, name=f"the export of {names[0]}")
        if len(imported.added) != exported.memories:
            raise store_error(
                f"only {len(imported.added)} of {exported.memories} memories arrived in {names[1]}",
                hint="Run `memcli doctor` on both stores; the source is unchanged.",
            )
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        src.close()
        dst.close()
    ctx.notices += [n for n in src.notices + dst.notices if n not in ctx.notices]
    return MigrateResult(names[0], names[1], exported.memories, imported.links, exported.audit, imported.sources, exported.spaces)
