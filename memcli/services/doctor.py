"""Check that the store's parts agree, and repair what can be rebuilt from the catalog (the truth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memcli.backends.base import VectorMeta
from memcli.context import Context
from memcli.paths import readable_by_others
from memcli.store import blob_to_vec


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    repaired: bool = False


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(f.ok or f.repaired for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [f.__dict__ for f in self.findings]}


def doctor(ctx: Context, *, repair: bool = False) -> DoctorReport:
    store = ctx.store  # opening it already completes writes an earlier run left unfinished
    cat = store.catalog
    out: list[Finding] = []
    integrity = cat.db.execute("PRAGMA quick_check").fetchone()[0]
    out.append(Finding("catalog integrity", integrity == "ok", f"SQLite quick_check: {integrity}"))
    fts = cat.db.execute("SELECT count(*) FROM memory_fts").fetchone()[0]
    active = cat.db.execute("SELECT count(*) FROM memories WHERE state = 'active'").fetchone()[0]
    out.append(Finding("keyword index", fts == active, f"{fts} entries for {active} active memories"))
    if fts != active and repair:
        with cat.transaction() as db:
            db.execute("INSERT INTO memory_fts(memory_fts) VALUES('rebuild')")
        out[-1] = Finding("keyword index", False, out[-1].detail + "; rebuilt from the catalog", repaired=True)
    pending = len(cat.pending()) + len(cat.tombstones())
    out.append(Finding("unfinished writes", pending == 0, f"{pending} pending"))
    for space in sorted({r[0] for r in cat.db.execute("SELECT DISTINCT space FROM memories")}):
        want = {r[0] for r in cat.db.execute("SELECT id FROM memories WHERE space = ? AND state = 'active'", (space,))}
        have = store.index.ids(space)
        missing, orphans = want - have, have - want
        ok = not missing and not orphans
        detail = f"space {space}: {len(want)} memories, {len(have)} vectors, {len(missing)} missing, {len(orphans)} orphaned"
        repaired = False
        if not ok and repair:
            rows = (
                cat.db.execute(
                    f"SELECT id, kind, coalesce(event_at, recorded_at), embedding FROM memories WHERE id IN ({','.join('?' * len(missing))})",
                    list(missing),
                ).fetchall()
                if missing
                else []
            )
            with store.write_lock():
                store.index.upsert(
                    space, [r[0] for r in rows], [blob_to_vec(r[3]) for r in rows], [VectorMeta(r[1], r[2]) for r in rows]
                )
                store.index.delete(space, list(orphans))
            repaired, detail = True, detail + "; re-indexed from the catalog"
        out.append(Finding("vector index", ok, detail, repaired))
    model = cat.meta("embed_model")
    if model is not None:
        try:
            configured = ctx.load_embedder(check_store=False).model_id
            out.append(Finding("embedding model", configured == model, f"store: {model}; configured: {configured}"))
        except Exception as e:  # a missing model is a finding here, not a crash
            out.append(
                Finding("embedding model", False, f"store: {model}; configured model unusable: {getattr(e, 'message', e)}")
            )
    loose = [p for p in (ctx.paths.data_dir, ctx.paths.db_file, ctx.paths.models_dir) if p.exists() and readable_by_others(p)]
    out.append(
        Finding("permissions", not loose, "owner-only" if not loose else "readable by others: " + ", ".join(map(str, loose)))
    )
    return DoctorReport(tuple(out))
