"""Check that the store's parts agree, and repair what can be rebuilt from the catalog (the truth)."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memcli.backends.base import VectorMeta
from memcli.context import Context
from memcli.paths import readable_by_others
from memcli.records import INSTRUCTION_LIKE
from memcli.store import REINDEXING, Catalog, blob_to_vec


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    repaired: bool = False


@dataclass(frozen=True)
class Quarantined:
    at: float
    operation: str  # extract, reconcile, summarise, ...
    source: str  # where the input came from (chat:SESSION#TURN)
    error: str  # why it was refused
    raw: str  # what the model answered


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    quarantined: tuple[Quarantined, ...] = ()  # newest first
    instruction_like: tuple[str, ...] = ()  # ids of the latest memories flagged as instruction-like (a few)

    @property
    def ok(self) -> bool:
        return all(f.ok or f.repaired for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [f.__dict__ for f in self.findings],
            "quarantined": [q.__dict__ for q in self.quarantined],
            "instruction_like": list(self.instruction_like),
        }


def doctor(ctx: Context, *, repair: bool = False) -> DoctorReport:
    store = ctx.store  # opening it already completes writes an earlier run left unfinished
    cat = store.catalog
    out: list[Finding] = []
    integrity = cat.integrity()
    out.append(Finding("catalog integrity", integrity == "ok", f"SQLite quick_check: {integrity}"))
    indexed, active, unindexed, stale = cat.keyword_index_counts()
    out.append(
        Finding(
            "keyword index",
            not stale and not unindexed,
            f"{indexed} entries for {active} active memories, {unindexed} missing, {stale} stale",
        )
    )
    if (stale or unindexed) and repair:
        cat.rebuild_keyword_index()
        out[-1] = Finding("keyword index", False, out[-1].detail + "; rebuilt from the catalog", repaired=True)
    pending = len(cat.pending()) + len(cat.tombstones())
    out.append(Finding("unfinished writes", pending == 0, f"{pending} pending"))
    model = cat.meta("embed_model")
    reindexing = model is not None and model.startswith(REINDEXING)
    if model is not None and reindexing:
        # An interrupted `memcli reindex`: the vector index is being rebuilt with the new model, and a
        # repair must not put the old model's vectors back. Finishing the reindex is the repair.
        target = model.removeprefix(REINDEXING)
        done, total = cat.count(embed_model=target), cat.count()
        out.append(
            Finding(
                "reindex",
                False,
                f"a `memcli reindex` to {target} was interrupted ({done} of {total} memories re-embedded): "
                "run `memcli reindex` to finish it; the vector index is checked after that",
            )
        )
    for space in [] if reindexing else cat.all_spaces():
        want = cat.active_ids(space)
        have = store.index.ids(space)
        missing, orphans = want - have, have - want
        ok = not missing and not orphans
        detail = f"space {space}: {len(want)} memories, {len(have)} vectors, {len(missing)} missing, {len(orphans)} orphaned"
        repaired = False
        if not ok and repair:
            rows = list(cat.index_rows(missing))
            with store.write_lock():
                store.index.upsert(
                    space, [r[0] for r in rows], [blob_to_vec(r[3]) for r in rows], [VectorMeta(r[1], r[2]) for r in rows]
                )
                store.index.delete(space, list(orphans))
            repaired, detail = True, detail + "; re-indexed from the catalog"
        out.append(Finding("vector index", ok, detail, repaired))
    if model is not None:
        try:
            configured = ctx.load_embedder(check_store=False).model_id
            out.append(Finding("embedding model", configured == model, f"store: {model}; configured: {configured}"))
        except Exception as e:  # a missing model is a finding here, not a crash
            out.append(
                Finding("embedding model", False, f"store: {model}; configured model unusable: {getattr(e, 'message', e)}")
            )
    out.append(_links(cat, repair))
    out.append(_locks(ctx.paths.data_dir))
    if cat.meta("consolidate:intent") is not None:
        out.append(Finding("consolidate", True, "a `memcli consolidate` run was interrupted mid-step: the next run finishes it"))
    cache = store.server_cache()
    if cache is not None:  # server mode: the catalog is a cache of the server's change log
        applied, on_server, where = cache
        synced = applied == on_server
        if not synced and repair:
            store.rebuild_server_cache("doctor --repair")
            applied, on_server, where = store.server_cache() or cache
        out.append(
            Finding(
                "server cache",
                synced,
                f"{applied} of {on_server} change-log records on {where} applied here"
                + ("" if synced else " (`memcli doctor --repair` rebuilds the cache)"),
                repaired=not synced and applied == on_server,
            )
        )
    loose = [p for p in (ctx.paths.data_dir, ctx.paths.db_file, ctx.paths.models_dir) if p.exists() and readable_by_others(p)]
    out.append(
        Finding("permissions", not loose, "owner-only" if not loose else "readable by others: " + ", ".join(map(str, loose)))
    )
    # LLM answers that failed to parse or validate: nothing was applied, they are kept to inspect.
    held = tuple(Quarantined(r[1], r[2], r[3], r[4], r[5]) for r in cat.quarantined(20))
    invalid, ungrounded = cat.quarantine_counts()
    out.append(Finding("LLM outputs", True, f"{invalid} quarantined (unparseable or invalid; nothing was applied)"))
    # Facts a model offered that the user's words do not support: dropped, kept here to inspect.
    out.append(Finding("invented facts", True, f"{ungrounded} dropped as not supported by what you said (not stored)"))
    # Text that reads as instructions to the assistant (flagged when written): data, never obeyed.
    flagged, ids = cat.tagged(INSTRUCTION_LIKE, 5)
    out.append(
        Finding(
            "instruction-like memories",
            True,
            f"{flagged} read as instructions to the assistant (quoted as data in prompts, never a source of facts)"
            + (f": {', '.join(i[:8] for i in ids)}{', ...' if flagged > len(ids) else ''}" if ids else "")
            + (f" — `memcli list --tag {INSTRUCTION_LIKE}` shows them" if flagged else ""),
        )
    )
    return DoctorReport(tuple(out), held, tuple(ids))


def _links(cat: Catalog, repair: bool) -> Finding:
    """Links whose either end is no longer in the catalog (a purge removes its links in the same
    transaction, so any found here are damage); repair deletes them."""
    dangling, total = cat.dangling_links()
    detail = f"{total} links, {dangling} to memories that no longer exist"
    if dangling and repair:
        cat.remove_dangling_links()
        return Finding("links", False, detail + "; removed", repaired=True)
    return Finding("links", dangling == 0, detail)


def _locks(data_dir: Path) -> Finding:
    """memcli's locks are fcntl locks: the OS releases them when their process dies, so a lock file
    left behind never blocks anyone. Say whether one is held right now (a write or a consolidate run
    in progress), which explains a command that waits."""
    held = []
    for name in ("write.lock", "consolidate.lock"):
        path = data_dir / name
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(name)
        finally:
            os.close(fd)  # closing drops the probe's shared lock
    if held:
        return Finding("locks", True, "held by a running memcli process: " + ", ".join(held))
    return Finding("locks", True, "free (a process that dies releases its locks; lock files left behind are harmless)")
